"""The x-ray's HTTP routes: turn tracing on and off, read the recorded traces.

``PUT /v1/xray {"pattern": "orders.*", "sample_every": 1}`` turns it on
(replacing any tracer), ``DELETE /v1/xray`` off, ``GET /v1/xray?after=ID``
returns the kept traces newer than ``ID`` (the dashboard's timeline and
``minibroker trace`` poll it). Tracing shows message paths across every
namespace, so with a permissions file only a principal granted everything
may use it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from minibroker.access.auth import Principal
from minibroker.access.permissions import ACTIONS, KINDS
from minibroker.core.xray import Xray
from minibroker.errors import BadRequest, BrokerError, Forbidden
from minibroker.http.fields import Field, parse_fields

if TYPE_CHECKING:
    from minibroker.server.http_app import HttpFace

XRAY_FIELDS = (
    Field("pattern", "string", "trace requests whose name matches this topic pattern", default="#"),
    Field("sample_every", "integer", "trace one request in this many", default=1, minimum=1),
)


def _require_everything(principal: Principal) -> None:
    grants = principal.grants
    if grants is not None and not all(grants.allows(a, k, "#") for a in ACTIONS for k in KINDS):
        raise Forbidden(f"{principal.name!r} may not use the x-ray (it sees every name)")


class XrayRoutes:
    def __init__(self, face: HttpFace) -> None:
        self.face = face
        self.broker = face.broker

    def routes(self) -> list[Route]:
        return [Route("/v1/xray", self._handle, methods=["GET", "PUT", "DELETE"])]

    async def _handle(self, request: Request) -> Response:
        try:
            _require_everything(self.face.authenticate(request))
            if request.method == "PUT":
                raw = await self.face._json_body(request)
                params = parse_fields(XRAY_FIELDS, raw)
                try:
                    self.broker.xray = Xray(
                        time.perf_counter, params["pattern"], sample_every=params["sample_every"]
                    )
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
            elif request.method == "DELETE":
                self.broker.xray = None
            return JSONResponse(self.state(request.query_params.get("after", "0")))
        except BrokerError as error:
            # The face's own rendering: a body that is not JSON is a 415 here too.
            return self.face.error_response(error)

    def state(self, after_text: str) -> dict[str, Any]:
        xray = self.broker.xray
        if xray is None:
            return {"enabled": False, "traces": []}
        after = int(after_text) if after_text.isascii() and after_text.isdigit() else 0
        return {
            "enabled": True,
            "pattern": xray.pattern,
            "sample_every": xray.sample_every,
            "traces": xray.recent(after),
        }
