# One image for the consumer and the API (the command picks which).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_features ./stream_features
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["stream-features"]
