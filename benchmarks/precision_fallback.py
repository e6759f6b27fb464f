"""Mixed precision where the CPU has no bf16 LSTM kernel (issue 34): ``bf16-mixed`` with the LSTM
run in fp32 (the fallback, encoders.autocast_runs) against plain fp32, side by side in one process.

    python benchmarks/precision_fallback.py                 # an AVX2-only CPU, on any x86-64 CPU
    python benchmarks/precision_fallback.py --native        # this CPU as it is

Without ``--native`` the measurement runs in a child process whose torch and oneDNN kernels are
limited to AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``): what an AVX2-only CPU
runs. configs/default.yaml's model (BiLSTM 128, mean pooling, fused AdamW), one training step
(forward, loss, backward, optimizer) and one inference forward, on random token batches of the
two shapes the README measures: BBC (B=32, 300-400 tokens) and SST-2 (B=64, 5-40 tokens). Each
repeat times both precisions over the same batches in turn; printed: medians of ``--repeats``
repeats of real tokens/s, and the median of the per-repeat ratios bf16-mixed / fp32.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SHAPES = {"bbc": (32, 300, 400), "sst2": (64, 5, 40)}  # batch, shortest, longest text


def batches(batch: int, low: int, high: int, count: int, vocab: int) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(0)
    found = []
    for _ in range(count):
        lengths = torch.randint(low, high + 1, (batch,), generator=generator).sort(descending=True).values
        ids = torch.randint(4, vocab, (batch, int(lengths.max())), generator=generator)
        ids[torch.arange(ids.size(1)) >= lengths[:, None]] = 0
        found.append({"input_ids": ids, "lengths": lengths, "labels": torch.arange(batch) % 5})
    return found


def measure(repeats: int, count: int) -> None:
    import torch
    import torch.nn.functional as F
    import yaml

    from project.model.classifier import TextClassifier
    from project.model.encoders import autocast_runs

    settings = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["model"]
    torch.manual_seed(0)
    model = TextClassifier(20000, [str(i) for i in range(5)], **{**settings, "lr_schedule": "constant"})
    optimizer = model.configure_optimizers()["optimizer"]
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"bf16 LSTM kernel here: {autocast_runs('lstm', torch.bfloat16)} (False: the fallback is measured)\n")
    print("| shape | step | fp32 tok/s | bf16-mixed tok/s | bf16-mixed / fp32 |\n|---|---|---|---|---|")

    def train(batch: dict, mixed: bool) -> None:
        model.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=mixed):
            loss = F.cross_entropy(model(batch["input_ids"], batch["lengths"]), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer(batch: dict, mixed: bool) -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=mixed):
            model(batch["input_ids"], batch["lengths"]).softmax(-1)

    for shape, (size, low, high) in SHAPES.items():
        items = batches(size, low, high, count, 20000)
        tokens = sum(int(b["lengths"].sum()) for b in items)
        for name, step in (("train", train), ("predict", infer)):
            def clock(mixed: bool) -> float:
                started = time.perf_counter()
                for batch in items:
                    step(batch, mixed)
                return tokens / (time.perf_counter() - started)

            clock(False), clock(True)  # warm-up: each shape once in each precision
            rates = [(clock(False), clock(True)) for _ in range(repeats)]
            fp32, mixed = (statistics.median(column) for column in zip(*rates))
            ratio = statistics.median(b / a for a, b in rates)
            print(f"| {shape} | {name} | {fp32:,.0f} | {mixed:,.0f} | {ratio:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--native", action="store_true", help="this CPU as it is, not limited to AVX2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4, help="batches per repeat")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.native or args.child:
        sys.path.insert(0, str(ROOT))
        measure(args.repeats, args.batches)
        return
    # The kernels are chosen when torch loads: the limit must be in the environment before that.
    command = [sys.executable, __file__, "--child", f"--repeats={args.repeats}", f"--batches={args.batches}"]
    sys.exit(subprocess.run(command, env={**os.environ, **AVX2}).returncode)


if __name__ == "__main__":
    main()
