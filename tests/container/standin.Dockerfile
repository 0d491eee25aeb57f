# A stand-in for the vendor vLLM image, for the container test: Debian's Python (made with
# debootstrap, imported as localhost/qaserve-standin-os) plus what those images ship for
# the server: torch (CPU), transformers, fastapi, uvicorn. No vLLM and no GPU, so the image
# under test serves with the transformers backend.
FROM localhost/qaserve-standin-os:latest
# The vendor images install into their own Python; so does this one (no PEP 668 lock).
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
COPY standin-requirements.txt /tmp/
# PIP_FIND_LINKS: the host's wheel folder (mounted), where the CPU torch build lives.
ARG PIP_FIND_LINKS=
RUN python3 -m pip install --no-cache-dir -r /tmp/standin-requirements.txt \
    && rm /tmp/standin-requirements.txt
