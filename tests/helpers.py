"""What the test files share, one copy each: tiny generated data, the arguments of a tiny fit,
``python -m project`` run in this process, as a child process or forked from one that imported
the project once, and reading what a run left (its kept checkpoint, its last.ckpt, its
TensorBoard scalars, its printed test metrics). Fixtures are in conftest.py."""

import contextlib
import csv
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORDS = {
    "neg": ["awful", "bad", "dull", "boring", "poor"],
    "neu": ["table", "street", "window", "paper", "train"],
    "pos": ["great", "good", "superb", "lovely", "fine"],
}
FILLER = ["the", "a", "and", "of", "it", "is", "was", "this", "film", "."]

# The smallest model and quiet output: what every tiny fit shares (add the data, the text
# column, the batch size and the length of the run).
TINY = ["--data.min_frequency=1", "--model.embedding_dim=8", "--model.hidden_size=8",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# A throwaway fit: two steps, nothing logged or tested afterwards.
QUICK = [*TINY, "--trainer.max_steps=2", "--trainer.logger=false", "--test_after_fit=false"]


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows ``{"sentence", "label"}``, labels neg / neu / pos in turn, each text 3 to 30
    words drawn from its label's words and filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = sorted(WORDS)[i % len(WORDS)]
        words = [rng.choice(WORDS[label] + FILLER) for _ in range(rng.randint(3, 30))]
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


def write_rows(path: Path, rows: list[dict]) -> str:
    """Rows in the file kind its extension names: csv and tsv by hand (tsv unquoted, as GLUE),
    json lines and parquet through ``datasets``' own writers."""
    if path.suffix == ".tsv":
        lines = ["\t".join(rows[0])] + ["\t".join(str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        from datasets import Dataset

        dataset = Dataset.from_list(rows)
        if path.suffix == ".parquet":
            dataset.to_parquet(str(path))
        else:
            dataset.to_json(str(path), lines=True)
    return str(path)


def write_splits(folder: Path, train: int = 60, validation: int = 15, test: int = 15) -> dict[str, str]:
    """``train.csv``, ``validation.csv`` and ``test.csv`` of ``make_rows`` (seeds 1, 2 and 3) in
    ``folder``, as ``--data.data_files`` takes them; a split of 0 rows is left out."""
    counts = {"train": (train, 1), "validation": (validation, 2), "test": (test, 3)}
    return {split: write_rows(folder / f"{split}.csv", make_rows(n, seed)) for split, (n, seed) in counts.items() if n}


def tiny_data(folder: Path, train: int = 60, validation: int = 15, test: int = 15, batch_size: int = 16) -> list[str]:
    """The flags of a tiny fit on fresh ``write_splits`` files in ``folder``, with a tokenization
    cache of its own there; add the subcommand, the run folder and the length of the run."""
    files = write_splits(folder, train, validation, test)
    return [f"--data.data_files={files}", "--data.text_column=sentence", f"--data.batch_size={batch_size}",
            f"--data.cache_dir={folder / 'cache'}", *TINY]


def write_class_folders(root: Path, per_class: dict[str, int]) -> Path:
    """``root/<class>/<i>.txt``, ``count`` texts of ``make_rows`` per class (each starting with
    its class name); returns ``root``."""
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for i, row in enumerate(make_rows(count, seed=len(name))):
            (root / name / f"{i}.txt").write_text(f"{name} {row['sentence']}")
    return root


def examples(small: int) -> int:
    """Hypothesis examples per generative test: ``small`` keeps CI fast; the environment
    variable PROJECT_EXAMPLES raises it for a long hunt (``PROJECT_EXAMPLES=500 pytest -k generated``)."""
    return int(os.environ.get("PROJECT_EXAMPLES", small))


# --- a real TensorBoard server, and a real browser ---

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; .ci/run installs it
# Flags for a machine without a network or a screen: no background connections, no sandbox (root).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def get(url: str, body: dict | None = None) -> bytes:
    """GET ``url``, or POST ``body`` as JSON (TensorBoard's HParams endpoints take a POST)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@contextlib.contextmanager
def tensorboard(logdir: Path, log: Path, run: str):
    """``tensorboard --logdir logdir --host 127.0.0.1 --port 0``, up and done reading ``run``;
    yields its address. The server binds a port the system picks and prints it, so no port is
    chosen here and then raced for. Its output goes to ``log``, a file, not a pipe that would
    fill up with nobody reading it."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
             "--port", "0"], stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        base, deadline = None, time.monotonic() + 90
        while True:  # up (its address printed), and done reading the run (it loads in the background)
            if base is None and (found := re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", log.read_text())):
                base = found.group(1)
            try:
                if base is not None and run in json.loads(get(f"{base}/data/plugin/images/tags")):
                    break
            except OSError:
                pass
            assert process.poll() is None, f"tensorboard exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not served within 90 s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- running python -m project ---


def run_cli(args: list[str]) -> tuple[int, str]:
    """``python -m project ARGS`` in this process: its exit code and what it printed on stderr.
    An exception that escapes (a traceback for a user) is not caught: the test fails on it."""
    from project.commands.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue()


def assert_contract(code: int, err: str, root: Path) -> bool:
    """The contract of every command: it succeeds (True), or it stops with exactly one
    ``error: ... fix: ...`` line, exit code 2, no traceback and no half-written file under
    ``root`` (False)."""
    assert "Traceback" not in err, err[-3000:]
    if code == 0:
        return True
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-3000:]
    assert len(errors) == 1 and "fix:" in errors[0], err[-3000:]
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left"
    return False


def run_cli_as_nobody(args: list[str]) -> tuple[int, str]:
    """``run_cli`` without root's override of file permissions: as root, as 'nobody' (the
    effective uid only, given back after). What it reads and writes must be open to 'nobody':
    pytest's tmp_path is root's alone, so use a folder of tempfile.mkdtemp() made 0o777."""
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(65534)
    try:
        return run_cli(args)
    finally:
        if as_root:
            os.seteuid(0)


def refused(args: list[str], root: Path, *says: str) -> str:
    """``python -m project ARGS`` in this process refuses, keeping the contract, with an error
    line that holds each of ``says``; returns that line."""
    code, err = run_cli(args)
    assert not assert_contract(code, err, root), "it was accepted"
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert all(part in line for part in says), line
    return line


# ``python -m project`` where importing torch or Lightning fails: what an exported model's
# commands (predict --model, serve --model) must start without (onnx_predictor.py).
WITHOUT_TORCH = [sys.executable, "-c", "import sys\nsys.modules['torch'] = sys.modules['lightning'] = None\n"
                 "from project.commands.cli import main\nmain()"]


def child_env(folder: Path, *pythonpath: Path) -> dict[str, str]:
    """The environment of a child process: this one's, with a Hugging Face datasets cache of its
    own under ``folder`` (never the user's) and the repository (and ``pythonpath``) importable."""
    return {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, *pythonpath))}


def start(args: list[str], folder: Path, *pythonpath: Path, **popen) -> subprocess.Popen:
    """``python -m project ARGS`` as a child process in the repository root (``child_env``), in
    a session of its own (``finish`` ends it with all it started); stdout and stderr are
    captured as text unless ``popen`` says otherwise."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "start_new_session": True, **popen}
    return subprocess.Popen([sys.executable, "-m", "project", *args], cwd=ROOT,
                            env=child_env(folder, *pythonpath), **popen)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """(stdout, stderr) of a child started in a session of its own, once it has ended. If it is
    still running after ``timeout`` seconds (a hang, a DDP deadlock), or the wait is interrupted,
    it is killed with everything it started (DDP ranks, torchrun's workers): the test fails
    instead of leaving processes behind."""
    try:
        return process.communicate(timeout=timeout)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise


class ForkServer:
    """The client of tests/forkserver.py: ``python -m project`` commands as forked children of
    one process that imported the project once (a tiny fit's process spends most of its
    seconds importing)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        self.process = subprocess.Popen([sys.executable, "-m", "tests.forkserver"], cwd=ROOT, text=True,
                                        env=child_env(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, *args: str, kill_at: tuple[str, str] | None = None) -> tuple[int, str]:
        """Exit status (negative: killed by that signal) and the output of ``python -m project
        ARGS``; ``kill_at``: (audit event, path pattern) at which the child SIGKILLs itself
        (tests/killer.py, ``kill_at_file_operation``)."""
        self.count += 1
        log = self.folder / f"run-{self.count}.log"
        self.process.stdin.write(json.dumps({"args": list(args), "log": str(log), "kill_at": kill_at}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["rc"], log.read_text()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


# --- what a run left ---


def best_checkpoint(cli) -> str:  # noqa: ANN001 - a finished LightningCLI
    """The path of the checkpoint a finished ``fit`` kept (the best validation macro-F1)."""
    return cli.trainer.checkpoint_callback.best_model_path


def run_dir(root: Path, version: int = 0) -> Path:
    """The run folder ``<root>/lightning_logs/<data>-<cell>-version_N`` (runs.py names it)."""
    found = [p for p in (root / "lightning_logs").glob(f"*version_{version}") if p.name.endswith(f"version_{version}")]
    assert len(found) == 1, found
    return found[0]


def last_checkpoint(root: Path) -> tuple[dict, int]:
    """Weights and step of the last.ckpt of the run under ``root``."""
    import torch

    saved = torch.load(next(root.glob("lightning_logs/*version_*/checkpoints/last.ckpt")), weights_only=False)
    return saved["state_dict"], saved["global_step"]


def printed_test_metrics(output: str) -> str:
    """The test figures a run printed: the progress line ``test (<ckpt>): loss ...`` of our bar
    (progress.py), or, with the bar off, Lightning's own table (what follows ``Test metric``)."""
    if "Test metric" in output:
        return output.split("Test metric")[-1]
    lines = re.findall(r"^test \(.*$", output, re.MULTILINE)
    assert lines, output[-3000:]
    return lines[-1]


def scalars(run: Path) -> dict[str, list[float]]:
    """Every value of every TensorBoard scalar in a run folder, in order (none sampled away),
    under the name it was logged with: the epoch curves, which runs.py writes to the train/ and
    validation/ sub-folders under other tags (tags.CURVES), are read back from there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from project.tags import CURVES

    found = {}
    for folder, renamed in [(run, {})] + [(run / sub, {tag: name for name, (s, tag) in CURVES.items() if s == sub})
                                         for sub in ("train", "validation") if (run / sub).is_dir()]:
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        found |= {renamed.get(tag, tag): [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return found


def token_ids(dm, split: str) -> list[list[int]]:  # noqa: ANN001 - a TextDataModule
    """The token ids of every text of a DataModule's split, in order."""
    return list(dm.dataset[split].with_format(None)["input_ids"])
