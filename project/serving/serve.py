"""``python -m project serve --ckpt_path X`` (or ``--model DIR``, an export): a model behind HTTP.

    POST /predict  {"texts": ["...", ...]} -> {"predictions": [{"text", "label", "probabilities",
                   "blank", "tokens", "unknown_tokens", "truncated"}, ...]}, in order: the
                   objects ``predict`` writes, one per text (labeller.py); a model of text
                   pairs takes {"pairs": [["first", "second"], ...]}; a multi-label model
                   answers "labels" (a list) in place of "label"
    GET  /health   {"status": "ok", "labels": [...], "model": ..., "text_columns": [...], "multi_label": false}
    GET  /         a page to try it: a text box (a pair's model: one per text), a button, the
                   label and a bar per class

This file: the command (its flags, the model, the listening socket); web.py: the application
(batching, bad requests, the page). FastAPI with uvicorn, not LitServe: measured side by side
here (benchmarks/serve.py, 32 clients), see docs/serving.md.
"""

import errno
import gc
import socket
import sys

from jsonargparse import ArgumentParser

from project.errors import UserError
from project.inference.labeller import load


def serve(
    ckpt_path: str | None = None,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_texts: int = 1_000,
    max_request_bytes: int = 1_000_000,
    max_batch_texts: int = 256,
    body_timeout_s: float = 10.0,
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
        body_timeout_s: A request body that stops arriving for this many seconds (a
            Content-Length larger than what is sent) gets 408 and its connection back.
        accelerator: ``auto``, ``cpu``, ``gpu`` / ``cuda``.
        calibrated: Temperature-scaled probabilities (as ``predict``); false: the raw ones.
        access_log: Log one line per request (uvicorn's access log).
    """
    for knob, value in (("max_texts", max_texts), ("max_request_bytes", max_request_bytes),
                        ("max_batch_texts", max_batch_texts), ("body_timeout_s", body_timeout_s)):
        if value < 1:
            raise UserError(f"--{knob} is {value}; fix: 1 or more")
    if not 0 <= port <= 65535:
        raise UserError(f"--port is {port}; fix: a port from 1 to 65535, or 0 for a free one")
    labeller = load(ckpt_path, model, accelerator, batch_size=max_batch_texts, calibrated=calibrated)
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
    from project import web  # noqa: PLC0415 - FastAPI and uvicorn load only to serve (see web.py)

    application = web.app(labeller, str(ckpt_path or model), max_texts, max_request_bytes, max_batch_texts,
                          body_timeout_s)
    held = web.hold_signals()  # before the line that tells the user they may stop it
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    print(f"Serving {ckpt_path or model} at http://{shown}:{bound[1]}/ (POST /predict, GET /health); Ctrl-C stops. "
          f"It gives {labeller.probabilities_kind}.", flush=True)
    # Everything loaded so far (torch, Lightning, the model: millions of objects) is kept out of
    # the garbage collector's walks: each full collection over them paused every request for
    # ~0.2 s, tripling the p99 latency under load (benchmarks/serve.py: 304 -> 99 ms).
    gc.freeze()
    web.run(application, listener, access_log, held)


def add_arguments(parser: ArgumentParser) -> None:
    """``serve``'s flags, on its subcommand parser (cli.py)."""
    parser.add_function_arguments(serve, fail_untyped=True)


def run(config: dict) -> None:
    serve(**{k: v for k, v in config.items() if k != "config"})
    sys.stdout.flush()
