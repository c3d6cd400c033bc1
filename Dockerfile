# The Claret services image: one image, every service (`claret serve --services ...` picks).
#
# Build without any registry: the base image is configurable, and Claret comes from wheels built on the
# host (`python -m pip wheel --wheel-dir dist .`), installed with --no-index.
#   docker build --build-arg BASE=python:3.11-slim-bookworm -t claret .
# BASE must offer python3 (3.11, like the wheels) with venv.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

COPY dist/ /wheels/
RUN python3 -m venv /opt/claret \
 && /opt/claret/bin/pip install --no-index --find-links /wheels claret \
 && rm -rf /wheels

ENV PATH=/opt/claret/bin:$PATH \
    CLARET_HOST=0.0.0.0 \
    CLARET_DATA_DIR=/data
EXPOSE 30031 9464
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["claret", "health", "--timeout", "3"]
ENTRYPOINT ["claret", "serve"]
