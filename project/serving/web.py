"""The web application of ``python -m project serve`` (serve.py): routes, the batching queue,
one-line errors, and the uvicorn server that runs it. Loaded only to serve: FastAPI and uvicorn
cost 0.18 s, which every other command would pay at start.

Requests arriving together are batched: while one batch runs (in a worker thread, so the server
keeps accepting), the requests that come in queue up, and the next batch takes all of them, up to
``max_batch_texts`` texts. A lone request waits for nobody; under load, batches grow by themselves.

A model of text pairs takes ``{"pairs": [[first, second], ...]}`` instead of ``{"texts": [...]}``.
Bad requests (not JSON, no ``texts``, an empty list, an item that is not a string, a body over
``max_request_bytes``, more than ``max_texts`` texts) get a 4xx with one line of JSON,
``{"error": "...; fix: ..."}``, and nothing else changes.
"""

import asyncio
import json
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from project.errors import UserError
from project.inference.labeller import Labeller

PAGE = (Path(__file__).parent / "serve_page.html").read_text(encoding="utf-8")


STOPS = (signal.SIGINT, signal.SIGTERM)


def hold_signals() -> tuple[list[int], dict]:
    """From now until the server's own handlers take over (``Server``): a Ctrl-C or SIGTERM is
    noted, and the server stops as soon as it has started. Called before the "Serving" line: in
    that window a Ctrl-C was swallowed (2 of 17 tries) and SIGTERM killed the process silently
    (exit -15), by Python's default handlers. Returns the signals noted, and the handlers before."""
    early: list[int] = []
    return early, {sig: signal.signal(sig, lambda sig, _: early.append(sig)) for sig in STOPS}


class Server(uvicorn.Server):
    """uvicorn's server, but a Ctrl-C or SIGTERM ends ``serve`` normally once it has shut down
    (in-flight requests answered): uvicorn raises the signal again afterwards, which under
    asyncio became a KeyboardInterrupt traceback in its log. ``early``: the signals that came
    before it ran (``hold_signals``), acted on as it starts."""

    def __init__(self, config: uvicorn.Config, early: list[int]) -> None:
        super().__init__(config)
        self.early = early

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOPS}
        for sig in self.early:
            self.handle_exit(sig, None)
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
        self.answered = self.unclaimed = 0

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
            # A request whose client has gone (its future cancelled, below) is not computed: 20
            # abandoned requests of 1,000 texts made the next client wait 8.5 s (2026-12-05 trial).
            waiting = [(texts, done) for texts, done in waiting if not done.cancelled()]
            if not waiting:
                continue
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
        if done.done():  # cancelled while its batch ran: its client is gone, the texts were computed for nobody
            self.unclaimed += len(results)
        else:
            self.answered += len(results)
            done.set_result(results)


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(item: object) -> str:
    """A JSON value's kind, in JSON's words."""
    return "null" if item is None else "number" if isinstance(item, float) else "true/false" if isinstance(item, bool) \
        else "an object" if isinstance(item, dict) else type(item).__name__


def _where(key: str, index: int, pairs: bool, n: int) -> str:
    """Where the ``index``-th text of a request is: ``"texts"[i]``, or ``"pairs"[i][j]``."""
    return f'"{key}"[{index // n}][{index % n}]' if pairs else f'"{key}"[{index}]'


def app(labeller: Labeller, model: str, max_texts: int = 1_000, max_request_bytes: int = 1_000_000,
        max_batch_texts: int = 256, body_timeout_s: float = 10.0) -> FastAPI:
    """The web application around ``labeller`` (a ``Predictor`` or ``OnnxPredictor``)."""
    batcher = Batcher(labeller, max_batch_texts)
    # A model of text pairs takes {"pairs": [[first, second], ...]}, any other {"texts": [...]}.
    pairs, columns = labeller.reads_pairs, ", ".join(labeller.text_columns)
    example = ('{"pairs": [["' + '", "'.join(f"<{c}>" for c in labeller.text_columns) + '"], ...]}' if pairs
               else '{"texts": ["a text", ...]}')

    async def lifespan(_: FastAPI):  # noqa: ANN202 - the batcher's task lives as long as the server
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        unclaimed = f" ({batcher.unclaimed:,} more computed for clients that had gone)" if batcher.unclaimed else ""
        print(f"serve: stopped, {batcher.answered:,} texts answered{unclaimed}.", flush=True)

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
        chunks = request.stream().__aiter__()
        while True:  # a body without a length is counted as it comes
            try:
                chunk = await asyncio.wait_for(anext(chunks), body_timeout_s)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:  # noqa: UP041 - Python 3.10: not the builtin TimeoutError yet
                return error(408, f"the body stopped coming for {body_timeout_s:g} s; fix: send all of it, with a "
                                  "Content-Length that matches it")
            body += chunk
            if len(body) > max_request_bytes:
                return error(413, too_big)
        try:
            # A number is never a text: kept as a float (inf past its range), not converted to an
            # int, whose 4,300-digit limit made valid JSON "not JSON".
            given = json.loads(body, parse_int=float)
        except (ValueError, RecursionError):
            return error(400, f"the body is not JSON; fix: send {example} with Content-Type: application/json")
        key, other = ("pairs", "texts") if pairs else ("texts", "pairs")
        texts = given.get(key) if isinstance(given, dict) else None
        if not isinstance(texts, list):
            if isinstance(given, dict) and other in given:
                reads = f"pairs of texts ({columns})" if pairs else "one text at a time"
                return error(422, f'"{other}" sent to a model that reads {reads}; fix: send {example}')
            return error(422, f'no "{key}" list in the body; fix: send {example}')
        if not texts:
            return error(422, f'"{key}" is empty; fix: send at least one {key[:-1]}')
        if len(texts) > max_texts:
            return error(413, f'{len(texts):,} {key} in one request, over {max_texts:,}; fix: split them over requests')
        if pairs:  # each a list of the model's count of strings: then checked as texts are, all in a row
            n = len(labeller.text_columns)
            wrong = next((i for i, pair in enumerate(texts) if not (isinstance(pair, list) and len(pair) == n)), None)
            if wrong is not None:
                given = texts[wrong]
                kind = f"a list of {len(given)}" if isinstance(given, list) else _kind(given)
                return error(422, f'"pairs"[{wrong}] is {kind}, not a list of {n} texts ({columns}); '
                                  f"fix: send {example}")
        flat = [text for pair in texts for text in pair] if pairs else texts
        wrong = next((i for i, text in enumerate(flat) if not isinstance(text, str)), None)
        if wrong is not None:
            return error(422, f'{_where(key, wrong, pairs, n if pairs else 1)} is {_kind(flat[wrong])}, not a string; '
                              f"fix: send texts only")
        if pairs:  # a pair with one text blank, or one holding [SEP]: the labeller's own checks
            try:
                labeller.inputs(texts, '"pairs"')
            except UserError as refusal:
                return error(422, str(refusal))
        # JSON may escape a lone surrogate ("\\ud800"): not a character, and no tokenizer reads it.
        wrong = next((i for i, text in enumerate(flat) if not _unicode(text)), None)
        if wrong is not None:
            return error(422, f'{_where(key, wrong, pairs, n if pairs else 1)} holds a lone surrogate (\\ud800-\\udfff), '
                              f"not a character; fix: send valid Unicode")
        answer = asyncio.ensure_future(batcher.predict(texts))
        while not (await asyncio.wait({answer}, timeout=0.05))[0]:
            if await request.is_disconnected():  # nobody to answer: cancelled, so the batcher skips it
                answer.cancel()
                return Response(status_code=499)  # (never sent: the connection is gone)
        return JSONResponse({"predictions": answer.result()})

    # HEAD too, as a load balancer's or uptime check's probe sends it (FastAPI routes GET alone).
    @web.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict:
        return {"status": "ok", "model": model, "labels": labeller.label_names,
                "probabilities": labeller.probabilities_kind, "text_columns": list(labeller.text_columns),
                "multi_label": labeller.multi_label}

    @web.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    return web


def run(web: FastAPI, listener: socket.socket, access_log: bool, held: tuple[list[int], dict]) -> None:
    """Serve ``web`` on the bound ``listener`` until Ctrl-C or SIGTERM (at once for one that came
    while ``held``: ``hold_signals``)."""
    early, before = held
    try:
        Server(uvicorn.Config(web, log_level="warning", access_log=access_log), early).run(sockets=[listener])
    finally:  # the handlers from before serve held them, for what is left of the process
        for sig, handler in before.items():
            signal.signal(sig, handler)
