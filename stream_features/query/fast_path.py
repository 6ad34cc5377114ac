"""The hot route without the framework: ``GET /v1/customers/{id}/features`` answered in plain
ASGI when the request is an ordinary one (inside authentication and metrics; a GET's body is
never read, so the body limit is not needed); everything else goes to the FastAPI app.

FastAPI's routing, parameter validation and response machinery cost several times the lookup
itself (``bench/http_throughput.py``). This handles only requests whose every part is plainly
valid (an id the route accepts, ``days`` as plain digits in range, ``as_of`` in the documented
syntax, no other parameter, no repeated one) and gives the route's exact answer; any other
request, and any error while answering, is handed to the FastAPI route, which stays the one
definition of validation and errors (and of the OpenAPI document; schemathesis checks both).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .api_models import CUSTOMER_ID_PATTERN, checked_as_of
from .reader import AsyncFeatureReader

ROUTE = "/v1/customers/{customer_id:path}/features"
PREFIX, SUFFIX = "/v1/customers/", "/features"
_ID = re.compile(CUSTOMER_ID_PATTERN)
_DAYS = re.compile(r"[1-9][0-9]{0,5}")
_HEADERS = [(b"content-type", b"application/json")]


class FeaturesFastPath:
    def __init__(self, app: Any, reader: AsyncFeatureReader, routes: Any, max_days: int) -> None:
        self.app = app
        self.reader = reader
        self.routes = routes  # the app's router: the route object goes in the scope, as routing
        self.route: Any = None  # would put it (the metrics label requests by route)
        self.max_days = max_days
        self.encoder = msgspec.json.Encoder()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        arguments = self._plain(scope) if scope["type"] == "http" else None
        if arguments is not None:
            try:
                features = await self.reader.get_features(arguments[0], days=arguments[1], as_of=arguments[2])
            except Exception:  # the route answers it, with the API's error model
                pass
            else:
                scope["route"] = self.route or self._route()
                body = self.encoder.encode(features)
                headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _route(self) -> Any:
        self.route = next(route for route in self.routes.routes if getattr(route, "path", None) == ROUTE)
        return self.route

    def _plain(self, scope: dict[str, Any]) -> tuple[str, int | None, str | None] | None:
        """(customer id, days, as_of) of an ordinary features request; None for any other."""
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(PREFIX) or not path.endswith(SUFFIX):
            return None
        customer_id = path[len(PREFIX) : -len(SUFFIX)]
        if not 1 <= len(customer_id) <= 256 or _ID.search(customer_id) is None:
            return None
        days: int | None = None
        as_of: str | None = None
        query = scope.get("query_string", b"")
        if query:
            try:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
            except ValueError:
                return None
            names = [name for name, _ in pairs]
            if len(set(names)) != len(names) or not set(names) <= {"days", "as_of"}:
                return None
            for name, value in pairs:
                if name == "days":
                    if not _DAYS.fullmatch(value) or int(value) > self.max_days:
                        return None
                    days = int(value)
                else:
                    try:
                        checked_as_of(value)
                    except ValueError:
                        return None
                    as_of = value
        return customer_id, days, as_of
