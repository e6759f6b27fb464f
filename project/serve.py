"""``python -m project serve --ckpt_path X`` (or ``--model DIR``, an export): a model behind HTTP.

    POST /predict  {"texts": ["...", ...]} -> {"predictions": [{"text", "label", "probabilities",
                   "blank"}, ...]}, in order: the objects ``predict`` writes, one per text
    GET  /health   {"status": "ok", "labels": [...], "model": ...}
    GET  /         a page to try it: a text box, a button, the label and a bar per class

Requests arriving together are batched: while one batch runs (in a worker thread, so the server
keeps accepting), the requests that come in queue up, and the next batch takes all of them, up to
``max_batch_texts`` texts. A lone request waits for nobody; under load, batches grow by themselves.

Bad requests (not JSON, no ``texts``, an empty list, an item that is not a string, a body over
``max_request_bytes``, more than ``max_texts`` texts) get a 4xx with one line of JSON,
``{"error": "...; fix: ..."}``, and nothing else changes.

FastAPI with uvicorn, not LitServe: measured side by side here (benchmarks/serve.py, 32 clients),
see the README's Serving section.
"""

import asyncio
import gc
import errno
import json
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jsonargparse import ArgumentParser
from starlette.exceptions import HTTPException

from project import predict
from project.errors import UserError
from project.predictor import Labeller

PAGE = (Path(__file__).parent / "serve_page.html").read_text(encoding="utf-8")


class Server(uvicorn.Server):
    """uvicorn's server, but a Ctrl-C or SIGTERM ends ``serve`` normally once it has shut down
    (in-flight requests answered): uvicorn raises the signal again afterwards, which under
    asyncio became a KeyboardInterrupt traceback in its log."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Batcher:
    """One queue of requests, one batch at a time in a worker thread."""

    def __init__(self, labeller: Labeller, max_batch_texts: int) -> None:
        self.labeller, self.max_batch_texts = labeller, max_batch_texts
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
        self.answered = 0

    async def predict(self, texts: list[str]) -> list[dict]:
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, done))
        return await done

    async def run(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            count = len(waiting[0][0])
            while not self.queue.empty() and count < self.max_batch_texts:  # everything queued meanwhile
                waiting.append(self.queue.get_nowait())
                count += len(waiting[-1][0])
            try:
                results = await asyncio.to_thread(self.labeller.predict, [t for texts, _ in waiting for t in texts])
            except Exception:  # noqa: BLE001 - one request's failure must not fail the others: each alone
                for texts, done in waiting:
                    await self._alone(texts, done)
                continue
            for texts, done in waiting:
                self._answer(done, results[: len(texts)])
                results = results[len(texts):]

    async def _alone(self, texts: list[str], done: asyncio.Future) -> None:
        try:
            self._answer(done, await asyncio.to_thread(self.labeller.predict, texts))
        except Exception as failure:  # noqa: BLE001 - its own request gets the error (a 500), the server goes on
            if not done.done():
                done.set_exception(failure)

    def _answer(self, done: asyncio.Future, results: list[dict]) -> None:
        self.answered += len(results)
        if not done.done():  # cancelled: its client is gone
            done.set_result(results)


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def app(labeller: Labeller, model: str, max_texts: int = 1_000, max_request_bytes: int = 1_000_000,
        max_batch_texts: int = 256) -> FastAPI:
    """The web application around ``labeller`` (a ``Predictor`` or ``OnnxPredictor``)."""
    batcher = Batcher(labeller, max_batch_texts)

    async def lifespan(_: FastAPI):  # noqa: ANN202 - the batcher's task lives as long as the server
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        print(f"serve: stopped, {batcher.answered:,} texts answered.", flush=True)

    web = FastAPI(title="project serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # Unknown paths and wrong methods: one line of JSON too, in the same shape.
    web.exception_handler(HTTPException)(lambda _, e: error(e.status_code, f"{e.detail}; fix: POST /predict, GET /health or GET /"))
    too_big = f"the request is over {max_request_bytes:,} bytes; fix: send fewer or shorter texts per request"

    @web.post("/predict")
    async def predict_route(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:  # refused before it is read
            return error(413, too_big)
        body = bytearray()
        async for chunk in request.stream():  # a body without a length is counted as it comes
            body += chunk
            if len(body) > max_request_bytes:
                return error(413, too_big)
        try:
            given = json.loads(body)
        except (ValueError, RecursionError):
            return error(400, 'the body is not JSON; fix: send {"texts": ["a text", ...]} with Content-Type: application/json')
        texts = given.get("texts") if isinstance(given, dict) else None
        if not isinstance(texts, list):
            return error(422, 'no "texts" list in the body; fix: send {"texts": ["a text", ...]}')
        if not texts:
            return error(422, '"texts" is empty; fix: send at least one text')
        if len(texts) > max_texts:
            return error(413, f'{len(texts):,} texts in one request, over {max_texts:,}; fix: split them over requests')
        wrong = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if wrong is not None:
            return error(422, f'"texts"[{wrong}] is {type(texts[wrong]).__name__}, not a string; fix: send texts only')
        # JSON may escape a lone surrogate ("\\ud800"): not a character, and no tokenizer reads it.
        wrong = next((i for i, text in enumerate(texts) if not _unicode(text)), None)
        if wrong is not None:
            return error(422, f'"texts"[{wrong}] holds a lone surrogate (\\ud800-\\udfff), not a character; '
                              f"fix: send valid Unicode")
        return JSONResponse({"predictions": await batcher.predict(texts)})

    @web.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model, "labels": labeller.label_names}

    @web.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    return web


def serve(
    ckpt_path: str | None = None,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_texts: int = 1_000,
    max_request_bytes: int = 1_000_000,
    max_batch_texts: int = 256,
    accelerator: str = "auto",
    calibrated: bool = True,
    access_log: bool = False,
) -> None:
    """Serve a model over HTTP until Ctrl-C: POST /predict, GET /health and a page at GET /.

    Args:
        ckpt_path: A checkpoint written by ``python -m project fit`` (run on PyTorch).
        model: Or a folder written by ``python -m project export`` (run on ONNX Runtime).
        host: The address to listen on; ``0.0.0.0`` for every network interface.
        port: The port; 0 picks a free one (the URL printed says which).
        max_texts: Most texts in one request; more get 413.
        max_request_bytes: Largest request body; a larger one gets 413 before it is read whole.
        max_batch_texts: Most texts the requests queued together run as, in one forward pass.
        accelerator: ``auto``, ``cpu``, ``gpu`` / ``cuda``.
        calibrated: Temperature-scaled probabilities (as ``predict``); false: the raw ones.
        access_log: Log one line per request (uvicorn's access log).
    """
    for knob, value in (("max_texts", max_texts), ("max_request_bytes", max_request_bytes),
                        ("max_batch_texts", max_batch_texts)):
        if value < 1:
            raise UserError(f"--{knob} is {value}; fix: 1 or more")
    if not 0 <= port <= 65535:
        raise UserError(f"--port is {port}; fix: a port from 1 to 65535, or 0 for a free one")
    labeller = predict.load(ckpt_path, model, accelerator, batch_size=max_batch_texts, calibrated=calibrated)
    try:  # bound here, so a taken port is one line, and port 0 tells which port it got
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)  # from now on a client waits for the server instead of being refused
    except (OSError, OverflowError) as failure:
        fix = "--port N (another one, or 0 for a free one)" if getattr(failure, "errno", None) == errno.EADDRINUSE \
            else "--host 127.0.0.1, or an address of this machine"
        raise UserError(f"cannot listen on {host}:{port} ({getattr(failure, 'strerror', None) or failure}); fix: {fix}") from None
    web = app(labeller, str(ckpt_path or model), max_texts, max_request_bytes, max_batch_texts)
    server = Server(uvicorn.Config(web, log_level="warning", access_log=access_log))
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    print(f"Serving {ckpt_path or model} at http://{shown}:{bound[1]}/ (POST /predict, GET /health); Ctrl-C stops.",
          flush=True)
    # Everything loaded so far (torch, Lightning, the model: millions of objects) is kept out of
    # the garbage collector's walks: each full collection over them paused every request for
    # ~0.2 s, tripling the p99 latency under load (benchmarks/serve.py: 304 -> 99 ms).
    gc.freeze()
    server.run(sockets=[listener])


def add_arguments(parser: ArgumentParser) -> None:
    """``serve``'s flags, on its subcommand parser (cli.py)."""
    parser.add_function_arguments(serve, fail_untyped=True)


def run(config: dict) -> None:
    serve(**{k: v for k, v in config.items() if k != "config"})
    sys.stdout.flush()
