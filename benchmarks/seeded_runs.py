"""What the benchmarks that fit arms over seeds share (skewed.py, pairs.py, multi_label.py): a fit
in a ``python -m project`` process of its own, results kept in ``results.json`` as each run ends
(a run found there is not run again: a stopped benchmark goes on where it was), and figures as
median (min-max) over the seeds. Imported by those scripts, not run."""

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def arguments(description: str, out: str, **extra: str) -> argparse.Namespace:
    """The flags every such benchmark takes (``--seeds``, ``--out``, ``--threads``) and its own
    (``extra``: flag name -> default)."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    for name, default in extra.items():
        parser.add_argument(f"--{name}", default=default)
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / out))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS of each run")
    args = parser.parse_args()
    args.out = Path(args.out).resolve()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def fit(flags: list[str], files: dict[str, str], root: Path, log: Path, threads: int) -> Path:
    """``python -m project fit`` on ``files`` (split -> path) with ``flags``, its output in
    ``log``; the run's folder."""
    data_files = "{" + ", ".join(f"{split}: {path}" for split, path in files.items()) + "}"
    command = [sys.executable, "-m", "project", "fit", f"--data.data_files={data_files}", *flags,
               f"--trainer.default_root_dir={root}"]
    with log.open("w") as out:
        subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, stdout=out,
                       stderr=subprocess.STDOUT, check=True)
    return next(root.glob("lightning_logs/*version_*"))


def scores(run: Path) -> dict[str, float]:
    """The kept checkpoint's test figures, from the run's metrics.json."""
    return json.loads((run / "metrics.json").read_text())["test"]


class Results:
    """``results.json`` in ``folder``: each run's figures by key, written as each run ends."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.file = folder / "results.json"
        self.found = json.loads(self.file.read_text()) if self.file.exists() else {}

    def get(self, key: str, run: Callable[[], dict]) -> dict:
        """The figures of ``key``: recorded ones, or ``run()``'s, recorded and printed."""
        if key not in self.found:
            self.found[key] = run()
            self.file.write_text(json.dumps(self.found, indent=1))
            print(f"{key}: {json.dumps(self.found[key])}", flush=True)
        return self.found[key]


def spread(values: list[float]) -> str:
    """Shares as %: median (min-max)."""
    return f"{100 * statistics.median(values):.2f} ({100 * min(values):.2f}-{100 * max(values):.2f})"
