# syntax=docker/dockerfile:1
# The ScalableBackend operator image.
#
#   docker build -t sbo-operator:0.1.0 .
#
# The builder installs the hashed, locked dependencies (deploy/requirements/,
# exported from uv.lock: `make image-locks`) as wheels only, so no compiler
# is needed anywhere, and builds the operator's own wheel. The final stage
# gets the virtual environment and nothing else. tests/integration/shipping
# replays this builder's RUN steps in a clean virtual environment.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ONLY_BINARY=:all: \
    BUILD_VENV=/opt/build \
    VIRTUAL_ENV=/opt/venv \
    SRC=/src
COPY deploy/requirements/build.txt deploy/requirements/operator.txt ${SRC}/requirements/
# The runtime venv gets neither pip nor setuptools: the build venv's pip installs into it.
RUN python -m venv "$BUILD_VENV" \
    && python -m venv --without-pip "$VIRTUAL_ENV" \
    && "$BUILD_VENV/bin/pip" install --no-deps --require-hashes -r "$SRC/requirements/build.txt" \
    && "$BUILD_VENV/bin/pip" --python "$VIRTUAL_ENV/bin/python" install --no-deps --require-hashes \
       -r "$SRC/requirements/operator.txt"
COPY pyproject.toml README.md ${SRC}/
COPY operator ${SRC}/operator
RUN "$BUILD_VENV/bin/pip" wheel --no-deps --no-build-isolation --wheel-dir "$SRC/dist" "$SRC" \
    && "$BUILD_VENV/bin/pip" --python "$VIRTUAL_ENV/bin/python" install --no-deps "$SRC"/dist/*.whl \
    && "$BUILD_VENV/bin/pip" --python "$VIRTUAL_ENV/bin/python" check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sbo-operator" \
      org.opencontainers.image.description="Kubernetes operator for ScalableBackend (sbo.dev/v1alpha1)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for the numeric uid: getpass and Kopf's peer identity want one.
RUN groupadd --system --gid 65532 sbo \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sbo
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/opt/venv/bin/sbo-operator"]
CMD ["run"]
