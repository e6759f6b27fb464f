"""SST-2 from scratch: the settings tried for configs/sst2_local.yaml, each a full
``python -m project fit`` run in a fresh process, side by side.

    python benchmarks/sst2_sweep.py                 # every setting (about 50 min on 2 cores)
    python benchmarks/sst2_sweep.py --only base,wd10 --seeds 42,1

Each setting is a list of CLI overrides on top of configs/sst2_local.yaml's data section (the
config's own model and trainer settings are reset to the defaults first, so a row says exactly
what differs from the default model). Prints best validation accuracy (the choice is made on
it), the test accuracy of that checkpoint, and wall time; rows sorted by validation accuracy.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent.parent
B64 = ["--data.batch_size=64"]
SETTINGS = {
    "base": ["--trainer.max_epochs=3", "--data.batch_size=32"],
    "max": ["--trainer.max_epochs=3", "--data.batch_size=32", "--model.pooling=max"],
    "attn": ["--trainer.max_epochs=3", "--data.batch_size=32", "--model.pooling=attention"],
    "gru": ["--trainer.max_epochs=3", "--data.batch_size=32", "--model.cell_type=gru"],
    "gru3e3": ["--trainer.max_epochs=3", "--data.batch_size=32", "--model.cell_type=gru",
               "--model.learning_rate=0.003"],
    "big": ["--trainer.max_epochs=3", "--data.batch_size=32", "--model.embedding_dim=256",
            "--model.hidden_size=256", "--model.embedding_dropout=0.5", "--model.classifier_dropout=0.5"],
    "ema": ["--trainer.max_epochs=3", "--data.batch_size=32", "--trainer.callbacks+=EMAWeightAveraging"],
    "bpe": ["--trainer.max_epochs=3", "--data.batch_size=32", "--data.tokenizer=bpe",
            "--data.max_vocab_size=16000"],
    "e5bs64": ["--trainer.max_epochs=5", *B64],
    "wd10": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1"],
    "wd20e8": ["--trainer.max_epochs=8", *B64, "--model.word_dropout=0.2"],
    "wd20e8gru": ["--trainer.max_epochs=8", *B64, "--model.word_dropout=0.2", "--model.cell_type=gru",
                  "--model.learning_rate=0.003"],
    "small": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--model.embedding_dim=64",
              "--model.hidden_size=64"],
    "lr3e3": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--model.learning_rate=0.003"],
    "ls01max": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--model.label_smoothing=0.1",
                "--model.pooling=max"],
    "last": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--model.pooling=last"],
    "minfreq1": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--data.min_frequency=1"],
    "h256": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--model.hidden_size=256"],
    "mf1wd15e6": ["--trainer.max_epochs=6", *B64, "--model.word_dropout=0.15", "--data.min_frequency=1"],
    "mf1ema": ["--trainer.max_epochs=5", *B64, "--model.word_dropout=0.1", "--data.min_frequency=1",
               "--trainer.callbacks+=EMAWeightAveraging"],
    "big2": ["--trainer.max_epochs=6", *B64, "--model.num_layers=2", "--model.hidden_size=256",
             "--model.embedding_dim=256", "--model.embedding_dropout=0.5", "--model.classifier_dropout=0.5",
             "--model.word_dropout=0.1"],
}
# The config's own model and vocabulary knobs, back to the defaults; each row sets the rest.
RESET = ["--model.word_dropout=0.0", "--data.min_frequency=2"]


def run(overrides: list[str], seed: int, root: Path) -> dict:
    command = [sys.executable, "-m", "project", "fit", "--config=configs/sst2_local.yaml", *RESET,
               *overrides, f"--seed_everything={seed}", f"--trainer.default_root_dir={root}",
               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    events = EventAccumulator(str(next((root / "lightning_logs").iterdir())))
    events.Reload()
    return {"val": max(e.value for e in events.Scalars("val/acc")),
            "test": events.Scalars("test/acc")[-1].value, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SETTINGS), help="comma-separated setting names")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds; medians are printed")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.only.split(","):
        results = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(SETTINGS[name], seed, Path(tmp)))
        row = {key: statistics.median(r[key] for r in results) for key in ("val", "test", "wall")}
        rows.append((name, row))
        print(f"{name:10s} val {row['val']:.2%}  test {row['test']:.2%}  {row['wall']:5.0f} s", flush=True)
    print(f"\nsorted by validation accuracy (medians over seeds {args.seeds}):")
    print("| setting | val acc | test acc | wall |\n| --- | --- | --- | --- |")
    for name, row in sorted(rows, key=lambda r: -r[1]["val"]):
        print(f"| {name} `{' '.join(SETTINGS[name])}` | {row['val']:.2%} | {row['test']:.2%} | {row['wall']:.0f} s |")


if __name__ == "__main__":
    main()
