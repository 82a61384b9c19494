"""The HTTP side of the host as an ASGI app: HTTP-triggered functions, the Event Grid webhook,
the admin endpoints and `GET /` (a liveness page, as Core Tools has one).

Requests for functions are translated into `func.HttpRequest` and the returned `func.HttpResponse`
(or `str`) back into a reply, with the same defaults the worker's converter applies (a
`text/plain; charset=utf-8` content type). Any other method on a known path is a 405 with
`Allow` - including TRACE and made-up methods, since a 501 would tell a client the server does
not speak the method at all, which is not what the real host says. A failing function is a 500
with a generic body; the traceback goes to the log, never to the client. Auth levels are not
enforced by default, as with Core Tools; given keys they are, as in Azure (`keys.py`). CORS
follows `Host.CORS` in local.settings.json, like `func start`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import azure.functions as func
from azure.functions import _abc as abc

from .admin import Admin
from .eventgrid import EventGridWebhook
from .exchange import Reply, Request
from .invoker import Invoker
from .keys import ADMIN, FUNCTION, SYSTEM, HostKeys
from .loader import FunctionSpec
from .routing import Matched, NotAllowed, Router, compile_route, split_prefix

log = logging.getLogger("devstack.host")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 100 * 1024 * 1024  # the Functions host's request size limit
ROOT_TEXT = "local Functions host\n"


def function_route(spec: FunctionSpec) -> str:
    """The template of an HTTP function: its `route`, or its name when it has none."""
    return str(spec.binding.get("route") or spec.name)


def build_router(functions: Iterable[FunctionSpec]) -> Router[FunctionSpec]:
    router: Router[FunctionSpec] = Router()
    for spec in functions:
        router.add(compile_route(function_route(spec), spec.binding.get("methods"), spec))
    return router


def to_http_request(request: Request, route_params: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest(
        request.method,
        request.url,
        headers=request.header_dict(),
        params=request.query(),
        route_params=route_params,
        body=request.body,
    )


def to_reply(result: Any, function_name: str) -> Reply:
    """Convert what an HTTP function returned, as the worker's HttpResponseConverter does."""
    if isinstance(result, str):
        return Reply.text(200, result)
    if not isinstance(result, abc.HttpResponse):
        log.error(
            "Function %s returned %s; an HTTP function must return func.HttpResponse or str",
            function_name,
            type(result).__name__,
        )
        return Reply.text(500, "Internal Server Error")
    headers = [(k, v) for k, v in result.headers.items() if k.lower() not in ("content-length", "transfer-encoding")]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mime = result.mimetype
        headers.append(("content-type", f"{mime}; charset={result.charset}" if mime.startswith("text/") else mime))
    return Reply(int(result.status_code), result.get_body(), headers)


class Cors:
    """`Host.CORS` / `Host.CORSCredentials` from local.settings.json; empty means no CORS headers."""

    def __init__(self, origins: Iterable[str], credentials: bool) -> None:
        self._origins = {o.rstrip("/").lower() for o in origins}
        self._credentials = credentials

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and ("*" in self._origins or origin.rstrip("/").lower() in self._origins)

    def preflight(self, request: Request) -> Reply | None:
        origin = request.header("origin")
        if (
            request.method != "OPTIONS"
            or not request.header("access-control-request-method")
            or not self._allowed(origin)
        ):
            return None
        headers = [
            ("access-control-allow-methods", request.header("access-control-request-method") or "*"),
            ("access-control-allow-headers", request.header("access-control-request-headers") or "*"),
            ("access-control-max-age", "600"),
        ]
        return Reply.empty(204, headers)

    def decorate(self, request: Request, reply: Reply) -> Reply:
        origin = request.header("origin")
        if not self._allowed(origin):
            return reply
        allow_origin = "*" if "*" in self._origins and not self._credentials else str(origin)
        extra = [("access-control-allow-origin", allow_origin), ("vary", "Origin")]
        if self._credentials:
            extra.append(("access-control-allow-credentials", "true"))
        return Reply(reply.status, reply.body, [*reply.headers, *extra])


class HttpApp:
    """The ASGI application; one instance serves every HTTP function of the app."""

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        route_prefix: str,
        invoker: Invoker,
        admin: Admin,
        webhook: EventGridWebhook,
        cors: Cors | None = None,
        keys: HostKeys | None = None,
    ) -> None:
        self._router = build_router(functions)
        self._keys = keys or HostKeys()
        self._prefix = route_prefix
        self._invoker = invoker
        self._admin = admin
        self._webhook = webhook
        self._cors = cors or Cors((), False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not part of Functions; uvicorn closes the connection
        request = await _read_request(scope, receive)
        if request is None:
            await _send(send, Reply.text(413, "request body too large"))
            return
        reply = self._cors.preflight(request) or await self.dispatch(request)
        await _send(send, self._cors.decorate(request, reply))

    async def dispatch(self, request: Request) -> Reply:
        if self._webhook.owns(request.route_path()):
            return self._keys.refuse(SYSTEM, request) or await self._webhook.handle(request)
        if request.path.strip("/").lower().split("/")[0] == "admin":
            refused = self._keys.refuse(ADMIN, request)
            if refused is not None:
                return refused
        admin = await self._admin.handle(request)
        if admin is not None:
            return admin
        rel = split_prefix(request.route_path(), self._prefix)
        if rel is not None:
            found = self._router.resolve(rel, request.method)
            if isinstance(found, Matched):
                spec = found.route.target
                level = str(spec.binding.get("authLevel") or FUNCTION)
                return self._keys.refuse(level, request) or await self._call(spec, request, found.params)
            if isinstance(found, NotAllowed):
                return Reply.empty(405, [("allow", ", ".join(found.allow))])
        if request.path == "/":
            if request.method in ("GET", "HEAD"):
                return Reply.text(200, ROOT_TEXT)
            return Reply.empty(405, [("allow", "GET, HEAD")])
        return Reply.empty(404)

    async def _call(self, spec: FunctionSpec, request: Request, params: dict[str, str]) -> Reply:
        outcome = await self._invoker.invoke(
            spec, to_http_request(request, params), f"({request.method} {request.path})"
        )
        if not outcome.ok:
            return Reply.text(500, "Internal Server Error")
        return to_reply(outcome.result, spec.name)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan events; the host starts its triggers itself, not through ASGI."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_request(scope: Scope, receive: Receive) -> Request | None:
    """Read the whole body (None if above the host's limit) and the parts of the scope we use."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    host = next((v for k, v in headers if k.lower() == "host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"").decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{raw_path.decode('latin-1')}" + (f"?{query}" if query else "")
    return Request(
        method=scope["method"].upper(),
        path=scope["path"],
        url=url,
        query_string=query,
        headers=headers,
        body=b"".join(chunks),
        raw_path=raw_path.decode("utf-8", "replace"),
    )


async def _send(send: Send, reply: Reply) -> None:
    headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
