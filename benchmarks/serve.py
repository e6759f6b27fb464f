"""Which server library for ``python -m project serve``: FastAPI + uvicorn (serve.py, with its own
queue that batches the requests arriving together) or LitServe (Lightning's serving engine, its
own batching: ``max_batch_size`` requests, ``batch_timeout``), over the same model, measured side
by side in one run: requests/s, p50 and p99 latency with 32 clients sending one text each.

    python benchmarks/serve.py --model exports/bbc [--texts texts.txt --requests 2000 --clients 32 --repeats 3]

Texts: ``--texts`` (one per line), else the 2,225 BBC News articles of the default data, sent in
order, one per request.

Each server is started as its own process on a free port on 127.0.0.1; the clients (aiohttp, in
this process) share the machine's cores with it, as they would on a one-box deployment. Rounds
alternate between the servers and the table gives medians over the rounds; "start s" is the time
from starting the process to its first answer of GET /health. ``--ckpt_path`` adds
the same FastAPI server over the checkpoint (PyTorch) instead of the export (ONNX Runtime).

``load()`` is also the load test of tests/test_serve.py.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import aiohttp

from project.data.sources import load_bbc_news  # the articles as fit reads them


async def _load(url: str, texts: list[str], requests: int, clients: int, limit_s: float) -> dict:
    latencies, failures, statuses = [], 0, {}
    queue = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=limit_s)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for i in queue:  # one shared iterator: 32 clients take the requests one by one
            start, text = time.perf_counter(), texts[i % len(texts)]
            try:
                async with session.post(url + "predict", json={"texts": [text]}) as response:
                    body = await response.json()
                    # Its own text back: batched requests were not mixed up.
                    ok = response.status == 200 and [p["text"] for p in body["predictions"]] == [text]
                    statuses[response.status] = statuses.get(response.status, 0) + 1
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError):
                ok = False
            latencies.append(time.perf_counter() - start)
            failures += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(session) for _ in range(clients))), limit_s)
        wall = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"requests": len(latencies), "failed": failures, "statuses": statuses, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "p50_ms": 1000 * pick(0.50), "p99_ms": 1000 * pick(0.99)}


def load(url: str, texts: list[str], requests: int = 2000, clients: int = 32, limit_s: float = 120) -> dict:
    """``requests`` POST /predict of one text each from ``clients`` concurrent clients, within
    ``limit_s`` seconds: requests/s, p50 and p99 latency (ms), failed requests (not 200, or a
    body that is not the prediction of the text sent) and the count of each status."""
    return asyncio.run(_load(url, texts, requests, clients, limit_s))


@contextmanager
def server(command: list[str], env: dict | None = None, wait_s: float = 120, cwd: str | None = None):
    """A server started as its own process; yields its URL once /health answers."""
    # Its own process group: LitServe's workers are processes of their own, left running if only
    # the server's main process is stopped.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})}, start_new_session=True, cwd=cwd)
    try:
        url, deadline = None, time.monotonic() + wait_s
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {command}")
            if match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
                url = match.group(1)
        # Read on in the background: a server that logs into a full pipe would stop answering.
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        while time.monotonic() < deadline:  # LitServe prints its URL before its workers are ready
            try:
                if urllib.request.urlopen(url + "health", timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        with suppress(ProcessLookupError):  # it may have exited already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an export folder (python -m project export)")
    parser.add_argument("--ckpt_path", help="also serve this checkpoint (PyTorch) with FastAPI")
    parser.add_argument("--texts", help="a text file, one text per line (default: the BBC News articles)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = ([t for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if t.strip()] if args.texts
             else [" ".join(t.split()) for split in load_bbc_news(42).values() for t in split["text"]])
    variants = {"fastapi+uvicorn, onnx": [sys.executable, "-m", "project", "serve", "--model", args.model, "--port", "0"]}
    if importlib.util.find_spec("litserve"):
        variants["litserve, onnx"] = [sys.executable, str(Path(__file__).with_name("serve_litserve.py")), args.model,
                                      str(free_port())]
    else:
        print("LitServe is not installed (pip install litserve): its row is left out", flush=True)
    if args.ckpt_path:
        variants["fastapi+uvicorn, pytorch"] = [sys.executable, "-m", "project", "serve", "--ckpt_path", args.ckpt_path,
                                                "--port", "0"]
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(args.repeats):
        for name, command in variants.items():
            started = time.perf_counter()
            with server(command) as url:
                start_s = time.perf_counter() - started  # process start to the first answer of /health
                load(url, texts, min(200, args.requests), args.clients)  # warm-up
                rows[name].append(result := {**load(url, texts, args.requests, args.clients), "start_s": start_s})
                print(f"round {round_ + 1} {name}: {json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()})}",
                      flush=True)
    print(f"\n{args.requests} requests of one text, {args.clients} clients, 127.0.0.1, median of {args.repeats} rounds")
    print(f"{'server':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'start s':>8}")
    first = statistics.median(r["requests_per_s"] for r in rows[next(iter(rows))])
    for name, results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("requests_per_s", "p50_ms", "p99_ms", "start_s")}
        print(f"{name:28} {med['requests_per_s']:8.0f} {med['p50_ms']:8.1f} {med['p99_ms']:8.1f} "
              f"{sum(r['failed'] for r in results):7d} {med['start_s']:8.2f}   req/s vs first row: "
              f"{med['requests_per_s'] / first:.2f}x")


if __name__ == "__main__":
    main()
