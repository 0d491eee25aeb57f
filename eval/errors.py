"""The one error type the command line reports as a message instead of a traceback."""


class EvalError(RuntimeError):
    """A problem the user has to act on: bad input, an unreachable or misbehaving server."""
