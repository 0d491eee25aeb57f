"""The HTTP layer. Shared plumbing (bodies, errors, keys, disconnects, metrics, the
dependencies routes take, the serving base and the model registry) at this level; each API
in a package of its own (``predict/``, ``openai/``) with its router, wire models and
serving object; health and /metrics in ``health.py``."""
