"""Expected calibration error (ECE) and NLL on the test split, before and after temperature
scaling, per dataset and seed, from full fits; medians over the seeds.

    python benchmarks/get_trec.py      # TREC's files, once
    python benchmarks/calibration.py --configs default,configs/sst2_local.yaml,configs/trec_local.yaml --seeds 3
    python benchmarks/calibration.py --extra="--trainer.max_epochs 1 --trainer.limit_train_batches 5"

Each config and seed is one ``python -m project fit`` (``default``: no config, the BBC News run;
seeds 42, 1, 2, ...: 42 is fit's default) as a child process in its own
``--trainer.default_root_dir`` under ``--runs``, its output in ``fit.log`` there; ``--extra`` is
added to every fit. A run whose metrics.json has its test is reused, so a second call only reads
(another ``--extra``: another ``--runs``). From each run's metrics.json (project/training/metrics_file.py):
the kept checkpoint's test accuracy, its temperature T (fitted on the validation of its own
weights), and on the test split the ECE and the NLL of the model's own probabilities and of
softmax(logits / T). T is fitted to minimise the validation NLL, so the test NLL says whether it
transferred; ECE on a few hundred texts moves by a point or two from one sample to the next.
The test split's reliability diagram is saved beside each run as a PNG.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project import tags

ROOT = Path(__file__).resolve().parent.parent


def fit(config: str, seed: int, runs: Path, extra: list[str], threads: int | None) -> Path:
    """The run folder of one fit of ``config`` (reused when its test is recorded)."""
    root = runs / f"{'default' if config == 'default' else Path(config).stem}-seed{seed}"
    done = sorted(root.glob("lightning_logs/*version_*/metrics.json"))
    if done and json.loads(done[-1].read_text()).get("test"):
        return done[-1].parent
    root.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "project", "fit", *([] if config == "default" else [f"--config={config}"]),
            f"--seed_everything={seed}", f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            *extra]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with (root / "fit.log").open("w") as log:
        code = subprocess.run(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        sys.exit(f"{root.name}: fit exited with {code}; see {root / 'fit.log'}")
    return sorted(root.glob("lightning_logs/*version_*/metrics.json"))[-1].parent


FIGURES = {"test acc": tags.TEST_ACC, "ECE before": tags.TEST_ECE, "ECE after": tags.TEST_ECE_CALIBRATED,
           "NLL before": tags.TEST_LOSS, "NLL after": tags.TEST_LOSS_CALIBRATED}


def row(run: Path) -> dict:
    record = json.loads((run / "metrics.json").read_text())
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    if f"test/{tags.RELIABILITY}" in events.Tags()["images"]:
        image = run.parent.parent / f"{run.name}-test-reliability.png"
        image.write_bytes(events.Images(f"test/{tags.RELIABILITY}")[-1].encoded_image_string)
    return {"T": record["best"][tags.TEMPERATURE], **{name: record["test"][tag] for name, tag in FIGURES.items()}}


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| data | seeds | test acc | T | test ECE before | test ECE after | seeds ECE better | "
             "test NLL before | test NLL after | seeds NLL better |", "|---|---|---|---|---|---|---|---|---|---|"]
    for config, rows in results.items():
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        ece = sum(r["ECE after"] < r["ECE before"] for r in rows)
        nll = sum(r["NLL after"] < r["NLL before"] for r in rows)
        lines.append(f"| {config} | {len(rows)} | {median['test acc']:.4f} | {median['T']:.2f} | "
                     f"{median['ECE before']:.4f} | {median['ECE after']:.4f} | {ece}/{len(rows)} | "
                     f"{median['NLL before']:.4f} | {median['NLL after']:.4f} | {nll}/{len(rows)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="default,configs/sst2_local.yaml",
                        help="comma-separated fit configs (paths from the repository root); default: no config, BBC")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per config: 42, then 1, 2, ...")
    parser.add_argument("--runs", help="where the runs are kept and reused (default: a new temporary folder)")
    parser.add_argument("--extra", default="", help='flags added to every fit, as one: --extra="--data.seed 1"')
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for each fit (1 on a machine shared with others)")
    args = parser.parse_args()
    runs = Path(args.runs or tempfile.mkdtemp(prefix="calibration-"))
    results = {}
    for config in args.configs.split(","):
        for seed in [42, *range(1, args.seeds)]:
            run = fit(config, seed, runs, shlex.split(args.extra), args.threads)
            results.setdefault(config, []).append(row(run))
            print(f"  {config} seed {seed}: {run}: {results[config][-1]}", file=sys.stderr, flush=True)
    (runs / "calibration.json").write_text(json.dumps(results, indent=1))
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
