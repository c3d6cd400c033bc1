# The Claret services image: one image, every service (`claret serve --services ...` picks).
#
# Built without any registry: the base image is configurable, and Claret comes from wheels built on the
# host (`python -m pip wheel --wheel-dir dist .`, Claret and all its dependencies), installed with --no-index.
#   docker build --build-arg BASE=python:3.11-slim-bookworm -t claret .
#   bash scripts/base-image && docker build --build-arg BASE=claret-base:bookworm -t claret .   # no registry
# BASE must offer python3 with venv, of the Python version the wheels were built for (3.11).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

COPY dist/ /wheels/
RUN python3 -m venv /opt/claret \
 && /opt/claret/bin/pip install --no-cache-dir --no-index --find-links /wheels claret \
 && rm -rf /wheels

ENV PATH=/opt/claret/bin:$PATH \
    CLARET_HOST=0.0.0.0 \
    CLARET_DATA_DIR=/data
EXPOSE 30031 9464
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["claret", "health", "--timeout", "3"]
ENTRYPOINT ["claret", "serve"]
