"""``predict`` against the bare model forward on the same batches: how much of the model's own
speed survives reading text, tokenizing, batching, Lightning's ``Trainer.predict`` and writing
JSON lines.

    python benchmarks/predict_throughput.py                    # trains a 30-step SST-2 model first
    python benchmarks/predict_throughput.py --ckpt_path X.ckpt --repeat 10 --runs 3

Input: the SST-2 test sentences (../shared/data/sst2/test.tsv) ``--repeat`` times, one per line.
``predict`` is timed end to end in this process (checkpoint load to the last line written);
the bare forward is ``model(input_ids, lengths)`` under ``torch.inference_mode`` over the same
length-sorted, already padded batches. Prints tokens/s of each and their ratio per run, then
the medians; also the ratio predict could reach if tokenizing (one ``encode_batch_fast`` of all
texts, timed alone) were its only cost beyond the forward, and the seconds that loading the
checkpoint, tokenizing and writing the JSON lines take, each timed alone.
"""

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from project.data.batching import pad_batch
from project.data.padding import length_sorted_batches, pad_id
from project.inference.labeller import Read
from project.inference.predict import predict, write_jsonl
from project.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parent.parent
SST2 = ROOT.parent / "shared" / "data" / "sst2"


def train_checkpoint(root: Path) -> str:
    """A short SST-2 fit with the tuned config's model: the weights' values do not change speed."""
    command = [sys.executable, "-m", "project", "fit", "--config=configs/sst2_local.yaml",
               "--trainer.max_steps=30", "--test_after_fit=false", f"--trainer.default_root_dir={root}",
               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return str(next(root.glob("lightning_logs/*version_0/checkpoints/last.ckpt")))


def bare_forward(ckpt_path: str, texts: list[str], batch_size: int) -> tuple[float, int]:
    """Seconds and real tokens of the model alone over predict's batches, built beforehand."""
    loaded = Predictor.from_checkpoint(ckpt_path, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = pa.array([e.ids for e in tokenizer.encode_batch(texts)], type=pa.list_(pa.int32()))
    batches = [pad_batch(table, pad_id(tokenizer)) for table in length_sorted_batches(ids, batch_size)[1]]
    lengths = ids.value_lengths().to_numpy()
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(batch["input_ids"], batch["lengths"]).softmax(-1)
    return time.perf_counter() - started, int(lengths.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", help="a checkpoint of `fit`; default: train a short SST-2 one")
    parser.add_argument("--repeat", type=int, default=10, help="copies of the 1,821 test sentences")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    with (SST2 / "test.tsv").open() as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    texts = sentences * args.repeat
    torch.set_num_threads(torch.get_num_threads())  # the same threads for both paths
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.ckpt_path or train_checkpoint(tmp)
        source = tmp / "input.txt"
        source.write_text("\n".join(texts) + "\n")
        bare_forward(ckpt, texts[: args.batch_size * 4], args.batch_size)  # warm-up: thread pools, allocator
        ratios, rates, ceilings = [], [], []
        print(f"{len(texts):,} texts, batch size {args.batch_size}, {torch.get_num_threads()} threads")
        for run in range(args.runs):
            bare_seconds, tokens = bare_forward(ckpt, texts, args.batch_size)
            # What predict must do that the bare forward skips, each timed alone.
            started = time.perf_counter()
            loaded = Predictor.from_checkpoint(ckpt, device="cpu")
            model, tokenizer = loaded.model, loaded.tokenizer
            load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            tokenizer.encode_batch_fast(texts)
            tokenize_seconds = time.perf_counter() - started
            started = time.perf_counter()
            n = len(texts)
            read = Read([True] * n, np.full((n, len(model.hparams.label_names)), 0.5), [9] * n, [0] * n, [False] * n)
            write_jsonl(texts, read, model.hparams.label_names, str(tmp / "written.jsonl"))
            write_seconds = time.perf_counter() - started
            started = time.perf_counter()
            predict(ckpt, input=str(source), output=str(tmp / "out.jsonl"), overwrite=True, batch_size=args.batch_size,
                    accelerator="cpu")
            predict_seconds = time.perf_counter() - started
            assert sum(1 for _ in (tmp / "out.jsonl").open()) == len(texts)
            bare, full = tokens / bare_seconds, tokens / predict_seconds
            ceiling = bare_seconds / (bare_seconds + tokenize_seconds)
            ratios.append(full / bare)
            ceilings.append(ceiling)
            rates.append((bare, full))
            print(f"run {run + 1}: bare forward {bare:,.0f} tokens/s, predict {full:,.0f} tokens/s, "
                  f"ratio {full / bare:.2f} (tokenizing alone caps it at {ceiling:.2f}); seconds: bare forward "
                  f"{bare_seconds:.3f}, predict {predict_seconds:.3f}, of which load {load_seconds:.3f}, "
                  f"tokenize {tokenize_seconds:.3f}, write {write_seconds:.3f}")
        print(f"median: bare forward {statistics.median(r[0] for r in rates):,.0f} tokens/s, "
              f"predict {statistics.median(r[1] for r in rates):,.0f} tokens/s, "
              f"ratio {statistics.median(ratios):.2f}, cap from tokenizing {statistics.median(ceilings):.2f}")


if __name__ == "__main__":
    main()
