"""Training speed: the project's ``Trainer`` path against a plain PyTorch loop written here, on
the same model and the same batches, side by side in one process.

    python benchmarks/train_throughput.py              # SST-2 shapes (short) and BBC News (long)
    python benchmarks/train_throughput.py --shapes bbc --repeats 5

The Trainer path is ``python -m project fit`` as users run it (LightningCLI, the DataModule's
Arrow batches, metrics, TensorBoard logging, the TensorBoard callbacks), in-process, for an epoch
slice of ``--steps`` steps. The plain loop trains a fresh copy of the same model on the same
batches, collated beforehand, with ``torch.optim.AdamW`` as a user writes it and the same
one-cycle schedule. Both rates are real (non-padding) tokens per second, median over steps after
10 warm-up steps; each line is one repeat, then the medians of the repeats.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from project.commands.cli import main as project_main
from project.model.classifier import TextClassifier
from project.training.throughput import Throughput

ROOT = Path(__file__).resolve().parent.parent
# name -> (fit arguments, training steps measured: an epoch slice)
SHAPES = {
    "sst2": (["--config=configs/sst2_local.yaml"], 200),  # 64 texts of ~10-60 tokens per batch
    "bbc": ([], 40),  # the default: 32 articles of ~300-400 tokens per batch
}
WARMUP = 10


def median_rate(rates: list[float]) -> float:
    return statistics.median(rates[WARMUP:])


def fit(shape: str, extra: list[str] = ()) -> tuple[list[float], object]:
    """Per-step tokens/s of a real ``fit`` (from the Throughput callback), and the CLI object."""
    args, steps = SHAPES[shape]
    args = [*args, *extra]
    with tempfile.TemporaryDirectory() as tmp:
        cli = project_main([
            "fit", *args, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", "--test_after_fit=false",
            f"--trainer.default_root_dir={tmp}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ])
    throughput = next(c for c in cli.trainer.callbacks if isinstance(c, Throughput))
    return throughput.step_rates, cli


def same_batches(cli: object, steps: int) -> list[dict[str, torch.Tensor]]:
    """The batches fit trained on: the first ``steps`` of epoch 0 (the sampler is seeded)."""
    loader = cli.datamodule.train_dataloader()
    loader.sampler.set_epoch(0)
    return [batch for batch, _ in zip(loader, range(steps))]


def plain_loop(cli: object, batches: list[dict[str, torch.Tensor]], compile: bool = False,
               fused: bool = False) -> list[float]:
    """Per-step tokens/s of a textbook PyTorch loop over the same model and batches
    (``fused``: with the fused AdamW that fit uses)."""
    hp = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    model = TextClassifier(**hp).train()
    forward = torch.compile(model, dynamic=True) if compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"],
                                  fused=fused or None)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, hp["learning_rate"], total_steps=len(batches),
                                                   pct_start=hp["warmup"])
    rates, last = [], time.perf_counter()
    for batch in batches:
        loss = F.cross_entropy(forward(batch["input_ids"], batch["lengths"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        now = time.perf_counter()
        rates.append(float(batch["lengths"].sum()) / (now - last))
        last = now
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="sst2,bbc", help="comma-separated: sst2 (needs ../shared), bbc")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit_args", default="", help="extra fit arguments, space-separated, e.g. "
                        "'--data.num_workers=1': measure a setting")
    parser.add_argument("--compile", action="store_true", help="torch.compile the plain loop's model")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # LightningCLI reads the arguments it is given, not these
    os.chdir(ROOT)  # the configs name their files relative to the repository root
    side_by_side(args.shapes.split(","), args.repeats, "plain loop",
                 lambda cli, batches: plain_loop(cli, batches, args.compile), args.fit_args.split())


def side_by_side(shapes: list[str], repeats: int, name: str, other: Callable, fit_args: list[str] = ()) -> None:
    """For each shape, ``repeats`` times: a fit, then ``other`` on its batches; print both rates
    and fit / other per repeat, then the medians."""
    for shape in shapes:
        ratios, fits, others = [], [], []
        for repeat in range(repeats):
            rates, cli = fit(shape, fit_args)
            fits.append(median_rate(rates))
            others.append(median_rate(other(cli, same_batches(cli, SHAPES[shape][1]))))
            ratios.append(fits[-1] / others[-1])
            print(f"{shape} repeat {repeat + 1}: fit {fits[-1]:,.0f} tokens/s, {name} {others[-1]:,.0f} "
                  f"tokens/s, fit / {name} {ratios[-1]:.2f}", flush=True)
        print(f"{shape} median: fit {statistics.median(fits):,.0f} tokens/s, {name} "
              f"{statistics.median(others):,.0f} tokens/s, fit / {name} {statistics.median(ratios):.2f}")

if __name__ == "__main__":
    main()
