# syntax=docker/dockerfile:1
# One image for the consumer and the API (the command picks which):
#   docker build -t stream-features .
# Stage "build" makes the wheel users install, as CI does (deploy/wheel-test.sh): maturin builds the
# Rust core against Python's stable ABI. Stage "runtime" installs only that wheel and its
# dependencies, from wheels: no compiler, no Rust toolchain, no sources; it runs as nobody.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG RUST_VERSION=1.95.0
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
ENV PATH=/root/.cargo/bin:$PATH
RUN pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock build.rs README.md ./
# No .git in the build context: pass the commit for `--version` (docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)).
ARG GIT_COMMIT=unknown
ENV STREAM_FEATURES_GIT_COMMIT=$GIT_COMMIT
COPY native ./native
COPY stream_features ./stream_features
COPY customer_activity_features ./customer_activity_features
RUN --mount=type=cache,target=/root/.cargo/registry --mount=type=cache,target=/src/target \
    maturin build --release --locked --compatibility manylinux_2_34 --out /wheels

FROM ${PYTHON_IMAGE} AS runtime
# The wheel comes in through a mount, so it is in no layer; --only-binary: nothing is compiled here,
# and the check after it fails the build if the base image ever ships a compiler or a Rust toolchain.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --only-binary=:all: /wheels/*.whl \
    && for tool in cc gcc cargo rustc; do if command -v "$tool"; then exit 1; fi; done
USER 65534:65534
EXPOSE 8000 9464
ENTRYPOINT ["stream-features"]
