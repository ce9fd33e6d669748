"""The HTTP side of `diffusekit serve`: a Starlette app (ASGI) run by uvicorn. Starlette because it is the smallest
real framework with streaming responses (the live preview is server-sent events) and a test client; uvicorn because it
is the standard ASGI server and pure Python with h11. The page in static/ uses only this API:

    GET  /api/models                      the models: name, data kind and shape, conditioning, tasks, samplers
    GET  /api/models/NAME/examples/I.png  real item I of a model's training data (inputs for reconstruction)
    POST /api/jobs                        submit {"model", "task", ...settings}: 202 {"id", "position"}; 429 when
                                          the model's queue is full
    GET  /api/jobs                        every job (newest first) with its settings, state and files
    GET  /api/jobs/ID                     one job: state, queue position, step of total, ETA, files
    GET  /api/jobs/ID/events              server-sent events: progress (with x_t and x0_hat previews), then done |
                                          failed | cancelled
    POST /api/jobs/ID/cancel              stop it (a waiting job at once, a running one within a step)
    GET  /api/jobs/ID/files/NAME          a result file (only names the job lists)
    POST /api/forward                     {"model", "t", "seed", "image" | "example"}: q(x_t | x_0) as pictures

With a token (`--token`), every /api call needs `Authorization: Bearer TOKEN` or `?token=TOKEN` (the page passes it
on from its own address). Errors answer JSON {"error": "..."} with a 4xx status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .jobs import JobQueue, QueueFull
from .models import ServedModel
from .params import MAX_BODY_BYTES, BadRequest, TooLarge, check_forward, check_job, image_bytes
from .work import check_upload, forward, picture, png_bytes, run_job

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0


def finite(v):
    """JSON has no inf or NaN (a job's options may hold inf, a reconstruction's PSNR may be inf): they are written
    as the strings "inf", "-inf", "nan", which the API reads back as numbers (as the models' listing writes them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


class ApiJSON(JSONResponse):
    """Every JSON answer of the API: non-finite numbers as strings (see `finite`), never a render error after a job
    was queued."""

    def render(self, content) -> bytes:
        return super().render(finite(content))


def error(status: int, message: str) -> JSONResponse:
    return ApiJSON({"error": message}, status_code=status)


async def json_body(request: Request) -> dict:
    """The request's JSON object, refusing a body over MAX_BODY_BYTES before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise TooLarge(f"request body over {MAX_BODY_BYTES // 2**20} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge(f"request body over {MAX_BODY_BYTES // 2**20} MB")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body must be JSON") from None
    except RecursionError:  # [[[[... nested deeper than Python's parser recurses
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


class Server:
    """The app's state: the models, the job queue, the output folder and the token."""

    def __init__(self, models: dict[str, ServedModel], outputs: Path, token: str | None = None,
                 max_waiting: int = 8):
        self.models, self.outputs, self.token = models, Path(outputs), token
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.queue = JobQueue(list(models), lambda job: run_job(models[job.model], job, self.outputs), max_waiting)

    def model(self, name) -> ServedModel:
        if not isinstance(name, str) or name not in self.models:
            raise LookupError(f"no model {name!r}; this server has: {', '.join(self.models)}")
        return self.models[name]

    def job(self, job_id: str):
        job = self.queue.get(job_id)
        if job is None:
            raise LookupError(f"no job {job_id!r} (finished jobs are remembered up to a limit)")
        return job

    def authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        given = request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), self.token.encode())


def guarded(server: Server, handler):
    """A handler behind the token check, with the API's errors turned into 4xx answers."""

    async def wrapped(request: Request) -> Response:
        if not server.authorised(request):
            return error(401, "this server needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN")
        try:
            return await handler(request)
        except TooLarge as e:
            return error(413, str(e))
        except BadRequest as e:
            return error(400, str(e))
        except QueueFull as e:
            return error(429, str(e))
        except LookupError as e:
            return error(404, str(e).strip("'\""))
        except (ValueError, FileNotFoundError) as e:
            return error(400, str(e))
        except ClientDisconnect:  # the client left while sending its body: nobody reads the answer
            return Response(status_code=400)
    return wrapped


class Api:
    """The route handlers (see the module docstring)."""

    def __init__(self, server: Server):
        self.server = server

    async def models(self, request):
        return ApiJSON([m.describe() for m in self.server.models.values()])

    async def example(self, request):
        served = self.server.model(request.path_params["name"])
        index = request.path_params["index"]
        img = await run_in_threadpool(lambda: picture(served.kind, served.example(index)[None]))
        return Response(png_bytes(img), media_type="image/png")

    async def submit(self, request):
        body = await json_body(request)
        served = self.server.model(body.get("model"))
        params = check_job(served, body)
        inputs = {}
        for key in ("image", "mask"):
            data = image_bytes(body, key, required=False)
            if data is not None:
                if key == "mask" and params["task"] != "inpaint":
                    raise BadRequest("a mask is for the inpaint task")
                inputs[key] = await run_in_threadpool(check_upload, data, key)
        job, position = self.server.queue.submit(served.name, params, inputs)
        return ApiJSON({"id": job.id, "position": position, "params": params}, status_code=202)

    async def listing(self, request):
        return ApiJSON(self.server.queue.listing())

    async def one(self, request):
        job = self.server.job(request.path_params["id"])
        return ApiJSON(job.summary(self.server.queue.position(job)))

    async def cancel(self, request):
        job = self.server.job(request.path_params["id"])
        self.server.queue.cancel(job)
        return ApiJSON(job.summary(self.server.queue.position(job)))

    async def events(self, request):
        job = self.server.job(request.path_params["id"])
        return StreamingResponse(self.stream(request, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream(self, request, job):
        """The job's events from the first, as they come; the queue position while it waits; a comment now and
        then so proxies keep the connection; the end after the job's last event or when the client leaves."""
        index, quiet, last_position = 0, 0.0, None
        while True:
            events = job.events[index:]
            for e in events:
                yield f"event: {e['type']}\ndata: {json.dumps(finite(e))}\n\n"
                if e["type"] in ("done", "failed", "cancelled"):
                    return
            index += len(events)
            position = self.server.queue.position(job)
            if position != last_position and job.state == "queued":
                yield f"event: queued\ndata: {json.dumps({'position': position})}\n\n"
            last_position = position
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)
            quiet = 0.0 if events else quiet + 0.05
            if quiet >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet = 0.0

    async def file(self, request):
        job = self.server.job(request.path_params["id"])
        name = request.path_params["name"]
        if name not in job.files:  # only what the job wrote, never a path the client made up
            raise LookupError(f"job {job.id} has no file {name!r}; it has: {', '.join(job.files) or 'none yet'}")
        folder = (self.server.outputs / job.id).resolve()
        path = (folder / name).resolve()
        if folder not in path.parents:
            raise LookupError(f"no file {name!r}")
        return FileResponse(path, filename=path.name)

    async def forward(self, request):
        body = await json_body(request)
        served = self.server.model(body.get("model"))
        p = check_forward(body)
        data = image_bytes(body, "image", required=False)
        upload = None if data is None else await run_in_threadpool(check_upload, data, "image")
        return ApiJSON(await run_in_threadpool(forward, served, p, upload))

    async def page(self, request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(server: Server) -> Starlette:
    """The ASGI app over a `Server` (see the module docstring for the routes)."""
    a = Api(server)
    routes = [
        Route("/", a.page),
        Route("/api/models", guarded(server, a.models)),
        Route("/api/models/{name}/examples/{index:int}.png", guarded(server, a.example)),
        Route("/api/jobs", guarded(server, a.submit), methods=["POST"]),
        Route("/api/jobs", guarded(server, a.listing), methods=["GET"]),
        Route("/api/jobs/{id}", guarded(server, a.one)),
        Route("/api/jobs/{id}/events", guarded(server, a.events)),
        Route("/api/jobs/{id}/cancel", guarded(server, a.cancel), methods=["POST"]),
        Route("/api/jobs/{id}/files/{name:path}", guarded(server, a.file)),
        Route("/api/forward", guarded(server, a.forward), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.queue.close()  # the workers finish their current job and stop taking new ones

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
