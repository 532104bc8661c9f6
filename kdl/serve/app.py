"""The HTTP side of `kdl serve`: a FastAPI app over one `ServedRun`, and `serve`, which runs it
with uvicorn.

Endpoints: GET / (the demo page, page.html), GET /health, GET /metadata, POST /predict and
POST /explain (a JSON body {"inputs": [...], ...} or a multipart upload of files), FastAPI's
/docs and /openapi.json. Every error is a JSON object {"error": KIND, "message": TEXT}: a kdl
DataError is 422, another KdlError or a malformed request 400, a body or batch over the limits
413; anything unexpected is logged with its traceback and answered 500 without it.

>>> app = create_app("runs/digits", max_body=4 * 2**20, max_batch=32)       # doctest: +SKIP
>>> serve("runs/digits", port=8000)               # until Ctrl-C; `kdl serve`  # doctest: +SKIP
"""

import contextlib
import importlib.resources
import json
import logging
import socket
from http import HTTPStatus

import python_multipart  # noqa: F401  (FastAPI's uploads need it: fail at start, not on the first upload)
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

import kdl
from kdl.errors import ConfigError, DataError, KdlError, RunError
from kdl.serve.model import MAX_BATCH, BadRequest, ServedRun, TooLarge

MAX_BODY = 16 * 2**20     # bytes a request body may hold
LOG = logging.getLogger("uvicorn.error")     # uvicorn's log: what `kdl serve` prints
STATUS = {TooLarge: 413, DataError: 422}      # every other KdlError: 400
PAGE = "page.html"


def create_app(run, *, max_body=MAX_BODY, max_batch=MAX_BATCH, unsafe=False):
    """The FastAPI app serving the run directory `run` (loaded now: a bad run fails here)."""
    if not (isinstance(max_body, int) and max_body >= 1):
        raise ConfigError(f"max_body takes the bytes a request body may hold, at least 1; got {max_body!r}")
    served = ServedRun(run, unsafe=unsafe, max_batch=max_batch)
    page = importlib.resources.files("kdl.serve").joinpath(PAGE).read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        served.close()         # at shutdown: a request still waiting for the model is answered 500

    app = FastAPI(title=f"kdl serve: {served.recipe.task}", version=kdl.__version__, lifespan=lifespan,
                  description=f"The saved kdl run `{run}` ({served.recipe.task}). The demo page is at /.")
    app.state.served = served
    app.add_middleware(Guard, max_bytes=max_body)
    app.add_exception_handler(KdlError, _kdl_error)
    app.add_exception_handler(HTTPException, _http_error)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def demo_page():
        return HTMLResponse(page, headers={"Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
            "media-src blob:; script-src 'unsafe-inline'")})

    @app.get("/health", summary="the server is up and its model loaded")
    def health():
        return {"status": "ok", "task": served.recipe.task, "backend": served.metadata["backend"]}

    @app.get("/metadata", summary="the run: task, inputs taken, class names, fields, versions")
    def metadata():
        return {**served.metadata, "limits": {"max_body": max_body, "max_batch": served.max_batch}}

    @app.post("/predict", summary="predict: JSON inputs or uploaded files",
              openapi_extra=_request_body("top_k (classifiers, language model), beam_size (translator), "
                                          "decoder (speech recognizer)"))
    async def predict(request: Request):
        inputs, files, fields = await _read(request)
        return await run_in_threadpool(served.predict, inputs, files, fields)

    @app.post("/explain", summary="why: an attribution picture (base64 PNG) per input",
              openapi_extra=_request_body("method (default: the run's first), target (class name or "
                                          "index; default: the predicted one)"))
    async def explain(request: Request):
        inputs, files, fields = await _read(request)
        return await run_in_threadpool(served.explain, inputs, files, fields)

    return app


def serve(run, host="127.0.0.1", port=8000, *, max_body=MAX_BODY, max_batch=MAX_BATCH, unsafe=False):
    """Serve the run directory `run` on host:port until interrupted (`kdl serve`). The port is
    taken and the model loaded before the one line that names the address is printed."""
    sock = _bind(host, port)
    try:
        app = create_app(run, max_body=max_body, max_batch=max_batch, unsafe=unsafe)
    except BaseException:
        sock.close()
        raise
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    served = app.state.served
    print(f"kdl: serving {run} ({served.recipe.task}, {served.metadata['backend']}) at "
          f"http://{shown}:{address[1]}/ (API docs: /docs); Ctrl-C stops", flush=True)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host, port):
    """A listening socket on host:port (0: a free port), or a RunError saying why not."""
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ConfigError(f"--port takes 0 to 65535 (0: any free port); got {port!r}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        raise RunError(f"cannot serve on {host}:{port}: {error.strerror or error}"
                       f"{' (another server holds it? choose another --port)' if port else ''}") from None
    sock.set_inheritable(True)
    return sock


async def _read(request):
    """(JSON inputs, None, fields) of a JSON body, or (None, [(filename, bytes)], fields) of a
    multipart upload; a BadRequest for anything else."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        files, fields = [], {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename, await value.read()))
            else:
                fields[name] = value
        await form.close()
        return None, files, fields
    body = await request.body()
    if not body:
        raise BadRequest(f"the request has no body; {request.url.path} takes a JSON object "
                         '{"inputs": [...]} or a multipart upload of files (see /metadata)')
    if kind != "application/json":
        raise BadRequest(f"the body is {kind or 'of no content type'}; {request.url.path} takes "
                         'application/json ({"inputs": [...]}) or multipart/form-data (files)')
    try:
        found = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:      # JSONDecodeError, and nesting too deep
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("the body is not valid JSON: it nests too deeply") from None
    if not isinstance(found, dict) or "inputs" not in found:
        got = "an object without \"inputs\"" if isinstance(found, dict) else type(found).__name__
        raise BadRequest(f'the body is {got}; expected an object {{"inputs": [...]}} and the endpoint\'s '
                         "fields (see /metadata)")
    fields = dict(found)
    return fields.pop("inputs"), None, fields


class Guard:
    """ASGI middleware around every request: a body over `max_bytes` is answered 413, by its
    Content-Length before it is read, else as soon as the bytes received pass the limit (a
    chunked upload); an unexpected exception is logged with its traceback and answered 500
    without it."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit():
            message = f"Content-Length {length.decode(errors='replace')!r} is not a number of bytes"
            return await _error_response(400, "BadRequest", message)(scope, receive, send)
        if int(length) > self.max_bytes:
            return await _error_response(413, "TooLarge", self._message(int(length)))(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise TooLarge(self._message(received, "at least "))
            return message

        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except Exception as error:
            LOG.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=error)
            if started:       # the answer is under way: the server can only drop the connection
                raise
            await _error_response(500, "InternalError", f"the server failed on this request "
                                  f"({type(error).__name__}); its log has the details")(scope, receive, send)

    def _message(self, size, prefix=""):
        return (f"the request body is {prefix}{size:,} bytes; this server takes at most {self.max_bytes:,} "
                "(kdl serve --max-body-mb)")


def _error_response(status, kind, message):
    return JSONResponse({"error": kind, "message": message}, status_code=status)


async def _kdl_error(request, error):
    status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
    return _error_response(status, type(error).__name__, str(error))


async def _http_error(request, error):
    """Starlette's own errors: an unknown path or method, an upload its parser cannot read."""
    message = f"the multipart upload cannot be read: {error.detail}"
    if error.status_code == 404:
        message = f"no endpoint {request.url.path}; see / (the demo page), /docs and /metadata"
    elif error.status_code == 405:
        message = f"{request.url.path} does not take {request.method}; see /docs"
    return _error_response(error.status_code, HTTPStatus(error.status_code).phrase.replace(" ", ""), message)


def _request_body(fields):
    """The OpenAPI description of /predict's and /explain's two body forms."""
    example = {"inputs": ["..."]}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
            "inputs": {"type": "array", "items": {},
                       "description": "texts, or arrays (images, waveforms): see GET /metadata"}},
            "description": f"inputs and optional fields: {fields}"}, "example": example},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            "description": f"files (images, WAVs, .npy, .txt: see GET /metadata) and optional fields: "
                           f"{fields}"}},
    }}}
