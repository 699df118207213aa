"""``priorfit serve``: a local web page that shows a PFN's posterior (Starlette + uvicorn, the
``[app]`` extra). Nothing is loaded from the internet: the page, its script and its style are
files of this package (``app/static``), served by the app.

Routes:

- ``GET /``: the page; ``GET /static/...``: its assets.
- ``GET /api/models``: the regression models (:func:`priorfit.app.regression.views`), and which
  views exist.
- ``POST /api/regression`` with JSON ``{"model": name, "points": [[x, y], ...],
  "density_x": x or null}``: the posterior (:func:`priorfit.app.regression.posterior`);
- ``POST /api/tables/inspect`` ``{"train_csv": text}``: the columns
  (:func:`priorfit.app.tables.inspect`); ``POST /api/tables/classify`` ``{"train_csv": text,
  "target": column, "test_csv": text or null}``: cross-validated scores and test
  probabilities (:func:`priorfit.app.tables.classify`);
- ``POST /api/curves`` ``{"curve": text, "metric": name, "threshold": v or null, "horizon": n
  or null}``: the extrapolation (:func:`priorfit.app.curves.extrapolate`).

Every answer carries the server's ``seconds``.

A bad request gets a 4xx with JSON ``{"error": message}``: malformed JSON or fields 400, an
unknown model 404, a body over :data:`MAX_BODY_BYTES` 413, a wrong method 405, an unknown path
404. Errors inside a view are 500 with the message, and the server goes on.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from priorfit.app import RequestError, curves, regression, tables

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 4 << 20  # 4 MiB: uploaded tables; 500 points are ~20 kB


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def _json_body(request: Request) -> dict:
    """The request's JSON object, read up to :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise BadRequest(413, f"request body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise BadRequest(400, f"malformed JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest(400, "the request body must be a JSON object")
    return payload


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


async def index(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html")


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"regression": [view.summary() for view in regression.views().values()],
                         "metrics": list(curves.METRICS), "max_rows": tables.MAX_ROWS})


def _fields(payload: dict, allowed: set[str]) -> None:
    unknown = set(payload) - allowed
    if unknown:
        raise BadRequest(400, f"unknown fields: {', '.join(sorted(map(str, unknown)))}")


async def _answer(function, *args) -> JSONResponse:
    """``function(*args)`` in a worker thread (the event loop stays free), timed; a
    :class:`RequestError` becomes a 400."""
    start = time.perf_counter()
    try:
        answer = await run_in_threadpool(function, *args)
    except RequestError as error:
        raise BadRequest(400, str(error)) from None
    answer["seconds"] = time.perf_counter() - start
    return JSONResponse(answer)


async def regression_posterior(request: Request) -> JSONResponse:
    payload = await _json_body(request)
    _fields(payload, {"model", "points", "density_x"})
    name = payload.get("model")
    views = regression.views()
    if not isinstance(name, str) or name not in views:
        raise BadRequest(404, f"unknown regression model {name!r}; one of {', '.join(views)}")
    density_x = payload.get("density_x")
    if density_x is not None and (isinstance(density_x, bool)
                                  or not isinstance(density_x, (int, float))
                                  or not math.isfinite(density_x)):
        raise BadRequest(400, f"density_x must be a finite number or null, got {density_x!r}")
    try:
        points = regression.parse_points(payload.get("points"))
    except RequestError as error:
        raise BadRequest(400, str(error)) from None
    return await _answer(regression.posterior, views[name], points, density_x)


async def tables_inspect(request: Request) -> JSONResponse:
    payload = await _json_body(request)
    _fields(payload, {"train_csv"})
    return await _answer(tables.inspect, payload.get("train_csv"))


async def tables_classify(request: Request) -> JSONResponse:
    payload = await _json_body(request)
    _fields(payload, {"train_csv", "target", "test_csv"})
    return await _answer(tables.classify, payload.get("train_csv"), payload.get("target"),
                         payload.get("test_csv"))


async def curves_extrapolate(request: Request) -> JSONResponse:
    payload = await _json_body(request)
    _fields(payload, {"curve", "metric", "threshold", "horizon"})
    return await _answer(curves.extrapolate, payload.get("curve"),
                         payload.get("metric", "accuracy"), payload.get("threshold"),
                         payload.get("horizon"))


async def _bad_request(request: Request, error: BadRequest) -> JSONResponse:
    return JSONResponse({"error": error.message}, status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)


def create_app() -> Starlette:
    """The web app (see the module)."""
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/models", models),
            Route("/api/regression", regression_posterior, methods=["POST"]),
            Route("/api/tables/inspect", tables_inspect, methods=["POST"]),
            Route("/api/tables/classify", tables_classify, methods=["POST"]),
            Route("/api/curves", curves_extrapolate, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={BadRequest: _bad_request, HTTPException: _http_error,
                            Exception: _server_error},
    )


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted, printing its address."""
    import uvicorn

    regression.views()  # load the models before the first request
    print(f"priorfit: the page is at http://{host}:{port}/  (Ctrl+C stops it)", flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
