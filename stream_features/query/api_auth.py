"""Optional bearer-token access control for the HTTP API (``serve --token-file``).

Every route answers only to ``Authorization: Bearer <token>`` with a token from the file, except
``/healthz`` (liveness probes), ``/metrics`` unless ``protect_metrics``, and the pages that carry
no data (the status page's HTML, ``/docs`` and ``/openapi.json``: the contract other teams
generate clients from). The status page sends the token it is given in its URL fragment
(``/status#token=…``), which browsers never send to the server or write to its logs.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ConfigurationError

OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/", "/status"})
SCHEME_NAME = "bearerAuth"
_encoder = msgspec.json.Encoder()


def read_tokens(path: str) -> list[str]:
    """One token per line; blank lines and ``#`` comments skipped. At least one, 16+ characters."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the API token file {path}: {exc.strerror}") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise ConfigurationError(f"the API token file {path} has no tokens")
    short = [number for number, token in enumerate(tokens, 1) if len(token) < 16 or " " in token]
    if short:
        raise ConfigurationError(f"API token {short[0]} in {path} is shorter than 16 characters or has a space")
    return tokens


def open_paths(protect_metrics: bool) -> frozenset[str]:
    return OPEN_PATHS if protect_metrics else OPEN_PATHS | {"/metrics"}


class BearerAuth:
    """ASGI middleware: 401 (the API's error model, ``WWW-Authenticate: Bearer``) unless the
    request carries a known token. Tokens are compared as SHA-256 digests with
    ``hmac.compare_digest`` against every known token, so neither a token's length nor how much
    of it matched shows in the time taken."""

    def __init__(self, app: Any, tokens: list[str], open_paths: frozenset[str]) -> None:
        self.app = app
        self._digests = [hashlib.sha256(token.encode()).digest() for token in tokens]
        self._open = open_paths

    def allows(self, header: bytes | None) -> bool:
        scheme, _, credentials = (header or b"").partition(b" ")
        given = hashlib.sha256(credentials.strip()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return scheme.lower() == b"bearer" and matched

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), None)
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        message = "a bearer token is required" if header is None else "the bearer token is not valid"
        body = _encoder.encode({"error": "unauthorized", "message": message})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="stream_features"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declare_security(schema: dict[str, Any], open_paths: frozenset[str]) -> dict[str, Any]:
    """The OpenAPI document as served with tokens on: the bearer scheme, required by every
    operation outside ``open_paths``, each of which may answer 401 with the error model."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a token from the file given to serve --token-file",
    }
    for path, operations in schema.get("paths", {}).items():
        if path in open_paths:
            continue
        for operation in operations.values():
            operation["security"] = [{SCHEME_NAME: []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "No bearer token, or not a valid one",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            }
    return schema
