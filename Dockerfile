# One image for the consumer and the API (the command picks which).
# Stage 1 builds the wheel, Rust core included (maturin needs cargo); stage 2 only installs it.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends curl gcc libc6-dev \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock build.rs README.md ./
# No .git in the build context: pass the commit for `--version` (docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)).
ARG GIT_COMMIT=unknown
ENV STREAM_FEATURES_GIT_COMMIT=$GIT_COMMIT
COPY native ./native
COPY stream_features ./stream_features
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER nobody
ENTRYPOINT ["stream-features"]
