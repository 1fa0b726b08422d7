"""`rollout dashboard`: a local web app (FastAPI on uvicorn) over a project's stacks, updated
live over server-sent events. Read-only unless started with `allow_actions`; an action is
the CLI's own request (rollout.app.board.Board.act)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rollout.app.board import ACTIONS, Board, UnknownService
from rollout.core.errors import InvalidInput, RolloutError
from rollout.web.chart import plotly_js, timeline_figure

STATIC = Path(__file__).parent / "static"
# A request from a page of this dashboard carries it; a page of another site cannot add it
# to a cross-origin POST without a CORS preflight, which this server never grants.
ACTION_HEADER = "X-Rollout-Dashboard"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::")
_REPORT_FILE = re.compile(r"^[\w.-]+\.(html|json|js)$")


def create_app(board: Board, *, allow_actions: bool = False, every: float = 1.0,
               chart_every: float = 5.0, host: str = "127.0.0.1") -> FastAPI:
    """The dashboard's app. `every`: seconds between reads for the live views; the chart's
    metric series (range queries to Prometheus) are read every `chart_every` seconds."""
    app = FastAPI(title="canary-rollout dashboard", docs_url=None, redoc_url=None,
                  openapi_url=None)
    # Answers only to the names it is bound under: a page of another site that rebinds its
    # DNS name to 127.0.0.1 gets 400, not the rollout state. Bound to every address, it
    # cannot know its names: the person who chose that was warned by the CLI.
    allowed = ["*"] if host in ANY_ADDRESS else sorted({*LOOPBACK, "[::1]", host})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UnknownService)
    async def unknown(_: Request, err: UnknownService) -> JSONResponse:
        return JSONResponse(_error(err), status_code=404)

    @app.exception_handler(InvalidInput)
    async def invalid(_: Request, err: InvalidInput) -> JSONResponse:
        return JSONResponse(_error(err), status_code=409)

    @app.exception_handler(RolloutError)
    async def failed(_: Request, err: RolloutError) -> JSONResponse:
        return JSONResponse(_error(err), status_code=502)

    @app.get("/", include_in_schema=False)
    @app.get("/stacks/{stack}/{service}", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    @app.get("/reports/{name}", include_in_schema=False)
    async def report(name: str) -> FileResponse:
        path = board.reports_dir / name
        if not _REPORT_FILE.match(name) or not path.is_file():
            raise UnknownService(f"no report {name}", hint="the history links to each report")
        return FileResponse(path)

    @app.get("/api/config")
    async def config() -> dict[str, Any]:
        return {"allowActions": allow_actions, "project": str(board.project_dir),
                "actions": list(ACTIONS) if allow_actions else []}

    @app.get("/api/overview")
    async def overview() -> list[dict[str, Any]]:
        return await run_in_threadpool(_overview, board)

    @app.get("/api/stacks/{stack}/{service}")
    async def service(stack: str, service: str) -> dict[str, Any]:
        return await run_in_threadpool(_service, board, stack, service)

    @app.get("/api/stacks/{stack}/{service}/timeline")
    async def timeline(stack: str, service: str) -> dict[str, Any]:
        return await run_in_threadpool(_figure, board, stack, service)

    @app.get("/api/events", response_class=EventSourceResponse)
    async def overview_events(request: Request) -> AsyncIterator[ServerSentEvent]:
        async for event in _changes(request, every, {"overview": lambda: _overview(board)}):
            yield event

    @app.get("/api/stacks/{stack}/{service}/events", response_class=EventSourceResponse)
    async def service_events(request: Request, stack: str, service: str
                             ) -> AsyncIterator[ServerSentEvent]:
        await run_in_threadpool(board.service_view, stack, service)  # 404 before the stream
        readers = {"service": lambda: _service(board, stack, service),
                   "timeline": lambda: _figure(board, stack, service)}
        async for event in _changes(request, every, readers,
                                    slow={"timeline": chart_every}):
            yield event

    @app.post("/api/stacks/{stack}/{service}/{action}")
    async def act(request: Request, stack: str, service: str, action: str) -> JSONResponse:
        if not allow_actions:
            return JSONResponse({"error": "this dashboard is read-only",
                                 "hint": "start it with `rollout dashboard --allow-actions`"},
                                status_code=403)
        if request.headers.get(ACTION_HEADER) != "1":
            return JSONResponse({"error": f"actions need the {ACTION_HEADER} header",
                                 "hint": "use the dashboard's buttons"}, status_code=403)
        if action not in ACTIONS:
            return JSONResponse({"error": f"unknown action {action}",
                                 "hint": "one of " + ", ".join(ACTIONS)}, status_code=404)
        body = await _json_body(request)
        reason = str(body.get("reason") or "")[:500]
        rollout_id = await run_in_threadpool(board.act, stack, service, action, reason=reason)
        return JSONResponse({"action": action, "rolloutId": rollout_id,
                             "message": f"{action} requested for rollout {rollout_id}"})

    return app


def _error(err: RolloutError) -> dict[str, str]:
    return {"error": err.message, "hint": err.hint or ""}


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("the request body is not JSON",
                           hint='send {"reason": "..."} or nothing') from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body is not a JSON object",
                           hint='send {"reason": "..."} or nothing')
    return body


def _overview(board: Board) -> list[dict[str, Any]]:
    return [view.to_dict() for view in board.overview()]


def _service(board: Board, stack: str, service: str) -> dict[str, Any]:
    return {"view": board.service_view(stack, service).to_dict(),
            "history": board.history(stack, service)}


def _figure(board: Board, stack: str, service: str) -> dict[str, Any]:
    report = board.timeline(stack, service)
    if report is None:
        return {"figure": None, "notes": ["no rollout has run on this service yet"]}
    return {"figure": timeline_figure(report), "notes": report["notes"]}


async def _changes(request: Request, every: float, readers: dict[str, Callable[[], Any]],
                   slow: dict[str, float] | None = None) -> AsyncIterator[ServerSentEvent]:
    """Each reader's value as an event when it changed (and once at the start); an error is
    an `error` event, and the stream goes on."""
    last: dict[str, Any] = {}
    due: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while not await request.is_disconnected():
        for name, read in readers.items():
            if loop.time() < due.get(name, 0.0):
                continue
            due[name] = loop.time() + (slow or {}).get(name, every)
            try:
                value = await run_in_threadpool(read)
            except RolloutError as err:
                yield ServerSentEvent(event="problem", data=_error(err))
                continue
            if value != last.get(name):
                last[name] = value
                yield ServerSentEvent(event=name, data=value)
        await asyncio.sleep(every)


class Dashboard:
    """The dashboard served by uvicorn on a thread of this process (the CLI serves it in the
    foreground instead); `port` 0 takes a free one. For the demo and the tests."""

    def __init__(self, board: Board, *, host: str = "127.0.0.1", port: int = 0,
                 allow_actions: bool = False, every: float = 1.0,
                 chart_every: float = 5.0) -> None:
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn_server(create_app(board, allow_actions=allow_actions,
                                                every=every, chart_every=chart_every,
                                                host=host))
        self._thread = threading.Thread(target=self.server.run,
                                        kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Dashboard:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RolloutError("the dashboard did not start",
                                   hint="see the log lines above")
            self._thread.join(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.sock.close()


def uvicorn_server(app: FastAPI) -> uvicorn.Server:
    """The dashboard's server: quiet but for warnings, and quick to stop (an open event
    stream would otherwise hold a shutdown)."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {err.strerror}",
                           hint="pick another --port (0 takes a free one) or --host") from None
    sock.listen(64)
    return sock
