"""The project on one device against the bare cuDNN layers it is built on: one markdown table.

    python benchmarks/gpu.py                # all rows: about 8 minutes on one GPU
    python benchmarks/gpu.py --smoke        # the same code, tiny repeats and runs (a test runs it on CPU)
    python benchmarks/gpu.py --steps-only --device cpu --out DIR   # only the fit-step, predict, memory rows

Prints the device (name, torch, cuDNN), one table, then what ``compare`` printed. ``fit CELL PREC
DATA``: real tokens/s of a training step of TextClassifier with configs/default.yaml's settings (its
own batch transfer, forward, loss, backward, fused AdamW) against the bare ``nn.LSTM`` / ``nn.GRU`` of
the same sizes, forward + backward on the same padded batches; PREC fp32 or bf16 (``torch.autocast``);
DATA bbc (the default DataModule's first batches, B=32, up to 400 tokens) or sst2 (B=64; synthetic
lengths if ../shared/data/sst2 is missing). Issue 20's target: fit / bare >= 0.8 on bbc. ``predict``:
``Predictor.predict`` of the BBC test texts against the bare forward over its batches. ``memory``: the
fit step's peak CUDA memory above what was allocated before, against the bare layer's (CPU: peak RSS).
``syncs``: host-GPU syncs in 50 steps of a real ``fit`` under ``torch.cuda.set_sync_debug_mode("warn")``.
``bbc default fit``: ``python -m project fit`` on one device. ``ddp bf16 bbc``: configs/ddp.yaml on one
device (NCCL on a GPU), bf16-mixed, 1 epoch, and the backend Lightning says it used. ``compare``: lstm
vs gru, 2 seeds, 3 epochs. ``pretrain lstm bbc``: the language model's train tokens/s with the adaptive
softmax against the full one, a fifth of an epoch of BBC News each.
Rates: medians over ``--repeats``, each running both paths over the same batches in turn (CUDA events
after a synchronize; CPU perf_counter) after an untimed pass; ratio: the median per-repeat ratio.
``--smoke``: 1 batch, 2 repeats, texts cut to 32 tokens, 2-3 step fits, synthetic SST-2 batches. A failed row says why (exit 1).
A bf16 row whose bare layer has no bf16 kernel on this CPU (oneDNN's LSTM on an AVX2-only CPU) reads
``unsupported`` and says so: the project runs such a layer in fp32 (encoders.autocast_runs).
"""

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project, where it is not installed in the environment

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from project import tags  # noqa: E402
from project.commands.cli import main as project_main  # noqa: E402
from project.data.padding import length_sorted_batches  # noqa: E402
from project.data.datamodule import TextDataModule  # noqa: E402
from project.inference.predictor import Predictor  # noqa: E402
from project.model.classifier import TextClassifier  # noqa: E402
from project.model.encoders import CELLS, RecurrentEncoder, autocast_runs  # noqa: E402
from project.training.throughput import peak_memory_mb, reset_peak_memory  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"
SST2_LOG_LENGTH = (1.92, 0.92)  # mean, std of log(tokens) of SST-2 train sentences (word tokenizer)
SYNC_WARMUP, SYNC_STEPS = 5, 50  # BBC has 56 training batches: the window ends before the epoch does
SMOKE_STEPS = {"fit": 3, "compare": 2, "pretrain": 4}  # --smoke's runs, on texts cut to 32 tokens
SMOKE_DATA = ["--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", "--data.max_length=32"]


def clock(device: torch.device, fn, items: list) -> float:  # noqa: ANN001
    """Seconds that ``fn`` over every item takes, the work it queued on the GPU included."""
    cuda, started = device.type == "cuda", time.perf_counter()
    if cuda:  # from an idle GPU; the events time the GPU's own timeline, to the end of the work
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    for item in items:
        fn(item)
    if not cuda:
        return time.perf_counter() - started
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000  # milliseconds


def side_by_side(device, tokens: int, a, a_items: list, b, b_items: list, repeats: int) -> tuple:  # noqa: ANN001
    """Median tokens/s of ``a`` and of ``b``, and the median of the per-repeat ratios a / b."""
    clock(device, a, a_items), clock(device, b, b_items)  # warm-up: every shape once (cuDNN plans, allocator)
    rates = [(tokens / clock(device, a, a_items), tokens / clock(device, b, b_items)) for _ in range(repeats)]
    return tuple(statistics.median(column) for column in zip(*[(x, y, x / y) for x, y in rates]))


def models(cell: str, vocab_size: int, label_names: list[str], device: torch.device) -> tuple:
    """configs/default.yaml's model with this cell, and the bare torch.nn layer of its sizes. A
    constant schedule: configure_optimizers then needs no Trainer (it gives the fused AdamW)."""
    settings = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["model"]
    model = TextClassifier(vocab_size, label_names, **{**settings, "cell_type": cell, "lr_schedule": "constant"})
    hp = model.hparams
    return model.to(device), CELLS[cell](hp.embedding_dim, hp.hidden_size, hp.num_layers, batch_first=True,
                                         bidirectional=hp.bidirectional).to(device)


def sst2(count: int, real: bool = True) -> tuple[int, list[str], list[dict], str]:
    """Vocabulary size, labels, ``count`` training batches and a note: configs/sst2_local.yaml's data
    (``real`` and present), or batches cut as the bucketing sampler cuts them from sorted lengths
    drawn from SST2_LOG_LENGTH."""
    if real and (SST2 / "train.tsv").is_file():
        data = TextDataModule(data_files={s: str(SST2 / f"{s}.tsv") for s in ("train", "validation", "test")},
                              text_column="sentence", min_frequency=1, max_length=64, batch_size=64)
        batches = [batch for batch, _ in zip(data.train_dataloader(), range(count))]
        return data.vocab_size, data.label_names, batches, "B=64, real SST-2 batches"
    lengths = np.exp(np.random.default_rng(0).normal(*SST2_LOG_LENGTH, 100 * 64))
    lengths = torch.from_numpy(np.sort(np.clip(np.rint(lengths), 1, 64)).astype(np.int64)).view(100, 64)
    batches = []
    for i in np.linspace(0, 99, count).astype(int):  # spread over short and long batches
        ids = torch.randint(4, 14000, (64, int(lengths[i].max())), generator=torch.Generator().manual_seed(int(i)))
        ids[torch.arange(ids.size(1)) >= lengths[i][:, None]] = 0  # padding
        batches.append({"input_ids": ids, "lengths": lengths[i].clone(), "labels": torch.arange(64) % 2})
    return 14000, ["negative", "positive"], batches, f"B=64, synthetic lengths: no {SST2}"


def fit_row(cell: str, precision: str, vocab: int, labels: list[str], batches: list[dict], device: torch.device,
            repeats: int, memory: bool) -> tuple[tuple, tuple | None]:
    """(fit, bare, ratio) tokens/s; with ``memory``, (fit MB, bare MB) too."""
    model, layer = models(cell, vocab, labels, device)
    optimizer = model.configure_optimizers()["optimizer"]
    if device.type == "cuda":  # as the DataModule pins them for a CUDA trainer: copies without a wait
        batches = [{k: v.pin_memory() for k, v in batch.items()} for batch in batches]
    inputs = [torch.randn(*b["input_ids"].shape, model.hparams.embedding_dim, device=device, requires_grad=True)
              for b in batches]

    def fit_step(batch: dict) -> None:
        batch = model.transfer_batch_to_device(batch, device, 0)  # the model's own: lengths may stay on the host
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(batch["input_ids"], batch["lengths"]), batch["labels"],
                                   weight=model.class_weight)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def bare_step(x: torch.Tensor) -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            loss = layer(x)[0].float().sum()
        loss.backward()  # the layer's weight and input gradients, as in the model
        layer.zero_grad(set_to_none=True)
        x.grad = None

    rates = side_by_side(device, sum(int(b["lengths"].sum()) for b in batches), fit_step, batches, bare_step, inputs,
                         repeats)
    used = []
    for fn, items in ((fit_step, batches), (bare_step, inputs)) if memory else ():
        before = reset_peak_memory(device)  # CUDA: allocated now; CPU: resident now, peak reset
        clock(device, fn, items)
        used.append(peak_memory_mb(device) - (before if device.type == "cuda" else 0))
    return rates, tuple(used) or None


def predict_row(data: TextDataModule, precision: str, device: torch.device, copies: int, repeats: int) -> tuple:
    """The row: predict and bare-forward tokens/s of the BBC LSTM over the BBC test texts, their ratio."""
    texts = list(data.texts("test", list(range(data.dataset["test"].num_rows)))) * copies
    model, layer = models("lstm", data.vocab_size, data.label_names, device)
    layer.eval()  # cuDNN's inference kernel, as Predictor's eval model runs
    predictor = Predictor(model, data.tokenizer, device=str(device),
                          precision="bf16-mixed" if precision == "bf16" else "32-true")
    ids = pa.array([e.ids for e in data.tokenizer.encode_batch_fast(texts)], pa.list_(pa.int32()))
    tables = length_sorted_batches(ids, predictor.batch_size)[1]
    inputs = [torch.randn(t.num_rows, int(t.column("input_ids").combine_chunks().value_lengths().to_numpy().max()),
                          model.hparams.embedding_dim, device=device) for t in tables]

    def bare_forward(x: torch.Tensor) -> None:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            layer(x)  # the layer alone: no embedding, pooling, softmax or copy back

    rates = side_by_side(device, int(ids.value_lengths().to_numpy().sum()), lambda _: predictor.predict(texts), [None],
                         bare_forward, inputs, repeats)
    return (f"{rates[0]:,.0f} tok/s", f"{rates[1]:,.0f} tok/s (bare forward)", f"{rates[2]:.2f}",
            f"Predictor.predict, {copies} x {data.dataset['test'].num_rows} test texts")


class SyncWindow(Callback):
    """Sync debug mode "warn" (CUDA) from the end of step ``warmup`` to the end of ``warmup + steps``."""

    def __init__(self, warmup: int = SYNC_WARMUP, steps: int = SYNC_STEPS) -> None:
        self.warmup, self.steps, self.watched = warmup, steps, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.watched += self.warmup < trainer.global_step <= self.warmup + self.steps
        if pl_module.device.type == "cuda" and trainer.global_step in (self.warmup, self.warmup + self.steps):
            torch.cuda.set_sync_debug_mode("warn" if trainer.global_step == self.warmup else "default")


def sync_row(device: torch.device, out: Path, smoke: bool) -> tuple:
    """Syncs in the watched steps of a real fit (the CLI, its callbacks, logger, progress bar)."""
    warmup, steps = (1, 1) if smoke else (SYNC_WARMUP, SYNC_STEPS)
    args = ["fit", f"--trainer.accelerator={device.type}", "--trainer.devices=1", "--trainer.limit_val_batches=0",
            f"--trainer.max_steps={warmup + steps}", "--test_after_fit=false", f"--trainer.default_root_dir={out}/sync",
            f"--trainer.callbacks+={SyncWindow.__module__}.SyncWindow", f"--trainer.callbacks.warmup={warmup}",
            f"--trainer.callbacks.steps={steps}", *(["--data.max_length=32"] if smoke else [])]
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("always")  # every sync, not only the first from each line of code
            cli = project_main(args)
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    window = next((c for c in cli.trainer.callbacks if isinstance(c, SyncWindow)), None) if cli else None
    if window is None or window.watched != steps:  # 0 syncs must mean none, not a fit that did not run
        raise RuntimeError(f"the fit did not run the {steps} watched steps; its output is on stderr")
    if device.type != "cuda":
        return "n/a (CPU)", "-", "n/a", "sync debug mode is CUDA's"
    found = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchronizing" in str(w.message))
    where = ", ".join(f"{place} x{n}" for place, n in found.most_common(3)) or "none"
    return f"{sum(found.values())} in {steps} steps", "0 per step (issue 20)", "n/a", f"top places: {where}"


def project_run(command: str, extra: list[str], device: torch.device, out: Path, smoke: bool,
                config: str | None = None) -> tuple[float, str]:
    """``python -m project COMMAND [--config CONFIG]`` on one device in a child process: its wall time
    and output. The config comes first: a flag before it would be refused (it would lose to it)."""
    log = out / f"{command}{'-' + Path(config).stem if config else ''}.log"
    args = [sys.executable, "-m", "project", command, *([f"--config={config}"] if config else []),
            f"--trainer.accelerator={device.type}", "--trainer.devices=1",
            *extra, *([f"--trainer.max_steps={SMOKE_STEPS[command]}", *SMOKE_DATA] if smoke else [])]
    with log.open("w") as f:
        started, done = time.perf_counter(), subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} exited {done.returncode}: {log.read_text()[-500:]}")
    return time.perf_counter() - started, log.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="the device measured (default: cuda if present); cuda: the current GPU, one")
    parser.add_argument("--out", help="where the runs go (default: a new temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="tiny repeats and runs: checks the code, not speed")
    parser.add_argument("--steps-only", action="store_true", help="only the fit-step, predict and memory rows")
    parser.add_argument("--repeats", type=int, help="timed repeats per row (default 7; smoke 2)")
    args = parser.parse_args()
    # Batches per repeat, and copies of the BBC test texts that predict labels.
    repeats, count, copies = args.repeats or (2 if args.smoke else 7), *((1, 1) if args.smoke else (8, 10))
    cuda = args.device == "cuda"
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    (out := Path(args.out or tempfile.mkdtemp(prefix="gpu-bench-")).resolve()).mkdir(parents=True, exist_ok=True)
    rows, bare, memory, compared = [], {}, [], [""]

    def row(label: str, measure) -> None:  # noqa: ANN001 - a row that fails says why; the others still run
        print(f"measuring: {label}", file=sys.stderr, flush=True)
        try:
            rows.append((label, *measure()))
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            rows.append((label, "failed", "-", "failed", " ".join(str(error).split())[:200].replace("|", "/")))

    data = TextDataModule(max_length=32 if args.smoke else 400)  # the default data, as fit loads it
    bbc = [batch for batch, _ in zip(data.train_dataloader(), range(count))]  # epoch 0's first batches
    shapes = {"bbc": (data.vocab_size, data.label_names, bbc, "default DataModule batches, B=32"), "sst2": sst2(count, real=not args.smoke)}  # --smoke: no 67k rows to tokenize

    def unsupported(cell: str, precision: str) -> tuple | None:
        """The cells of a row whose bare layer cannot run in bf16 on this CPU; None where it can."""
        if cuda or precision != "bf16" or autocast_runs(cell, torch.bfloat16):
            return None
        return ("unsupported", "-", "n/a", f"no bf16 {cell.upper()} kernel on this CPU "
                f"({torch.backends.cpu.get_cpu_capability()}): fit runs that layer in fp32")

    def fit_cells(cell: str, precision: str, shape: str) -> tuple:
        if cells := unsupported(cell, precision):
            if shape == "bbc":
                memory.append((f"memory {cell} {precision} bbc", *cells))
            return cells
        vocab, labels, batches, note = shapes[shape]
        (fit, layer, ratio), used = fit_row(cell, precision, vocab, labels, batches, device, repeats, shape == "bbc")
        bare[cell, precision, shape] = layer
        if used:  # its row follows the predict rows
            cells = ((f"{used[1]:,.1f} MB (bare)", f"{used[0] / used[1]:.2f}", "peak above what was allocated before")
                     if cuda else ("n/a", "n/a", "process peak RSS (CPU: no per-path figure)"))
            memory.append((f"memory {cell} {precision} bbc", f"{used[0]:,.1f} MB", *cells))
        return f"{fit:,.0f} tok/s", f"{layer:,.0f} tok/s (bare)", f"{ratio:.2f}", note

    def default_fit_cells() -> tuple:
        wall = project_run("fit", [f"--trainer.default_root_dir={out / 'fit'}"], device, out, args.smoke)[0]
        metrics = json.loads(next((out / "fit").glob("lightning_logs/*version_*/metrics.json")).read_text())
        rate, layer = metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN], bare["lstm", "fp32", "bbc"]
        return (f"{wall:.0f} s, test acc {metrics['test'][tags.TEST_ACC]:.4f}", f"{layer:,.0f} tok/s (bare)",
                f"{rate / layer:.2f}", f"the fit's median train {rate:,.0f} tok/s / bare LSTM fp32 bbc")

    def ddp_cells() -> tuple:  # configs/ddp.yaml on one device (NCCL on a GPU, gloo on CPU), bf16
        wall, log = project_run("fit", ["--trainer.max_epochs=1", "--trainer.precision=bf16-mixed",
                                        f"--trainer.default_root_dir={out / 'ddp'}"], device, out, args.smoke,
                                config="configs/ddp.yaml")
        backend = re.search(r"distributed_backend=(\w+)", log)
        return f"{wall:.0f} s", "-", "n/a", f"backend {backend.group(1) if backend else 'not printed'}, 1 epoch"

    def pretrain_cells() -> tuple:
        """pretrain on BBC News' text, adaptive softmax against full, a fifth of an epoch each."""
        rates = {}
        for softmax in ("adaptive", "full"):
            root = out / f"pretrain-{softmax}"
            project_run("pretrain", [f"--model.softmax={softmax}", "--trainer.max_epochs=1",
                                     "--trainer.limit_train_batches=0.2", "--throughput.warmup_steps=1",
                                     f"--trainer.default_root_dir={root}"], device, out, args.smoke)
            metrics = json.loads(next(root.glob("lightning_logs/*-lm-version_*/metrics.json")).read_text())
            rates[softmax] = metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN]
        return (f"{rates['adaptive']:,.0f} tok/s", f"{rates['full']:,.0f} tok/s (full softmax)",
                f"{rates['adaptive'] / rates['full']:.2f}", "language model train tokens/s, BiLSTM 128, BBC windows of 70")

    def compare_cells() -> tuple:
        seeds = 1 if args.smoke else 2  # the smoke checks the code: one run per cell
        printed = project_run("compare", ["--cell_types=lstm,gru", f"--seeds={seeds}", "--trainer.max_epochs=3",
                                          f"--output_dir={out / 'compare'}"], device, out, args.smoke)[1]
        compared[0] = printed[printed.index("Machine:"):]
        runs = json.loads((out / "compare" / "compare.json").read_text())["runs"]
        rate, acc = ({c: statistics.mean(r[key] for r in runs if r["cell_type"] == c and r[key] is not None)
                      for c in ("lstm", "gru")} for key in ("train_tokens_per_s", "test_acc"))
        return (f"gru {rate['gru']:,.0f} tok/s", f"lstm {rate['lstm']:,.0f} tok/s", f"{rate['gru'] / rate['lstm']:.2f}",
                f"train tokens/s, mean of {seeds} seed(s); test acc lstm {acc['lstm']:.4f}, gru {acc['gru']:.4f}")

    for shape in shapes:
        for cell in ("lstm", "gru"):
            for precision in ("fp32", "bf16"):
                row(f"fit {cell} {precision} {shape}", lambda c=cell, p=precision, s=shape: fit_cells(c, p, s))
    for precision in ("fp32", "bf16"):
        row(f"predict lstm {precision} bbc",
            lambda p=precision: unsupported("lstm", p) or predict_row(data, p, device, copies, repeats))
    rows.extend(memory)
    if not args.steps_only:
        row("syncs", lambda: sync_row(device, out, args.smoke))
        row("bbc default fit", default_fit_cells)
        row("ddp bf16 bbc", ddp_cells)
        row("compare lstm vs gru", compare_cells)
        row("pretrain lstm bbc", pretrain_cells)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"Device: {name}; torch {torch.__version__}; cuDNN {torch.backends.cudnn.version() if cuda else 'n/a'}; "
          f"RecurrentEncoder.packed = {getattr(RecurrentEncoder, 'packed', 'absent')} (None: packed on CUDA)"
          f"{'; SMOKE: the figures check the code only' if args.smoke else ''}\n")
    print("| row | measured | against | ratio | notes |\n|---|---|---|---|---|")
    print("\n".join("| " + " | ".join(str(c) for c in cells) + " |" for cells in rows))
    if compared[0]:
        print(f"\ncompare printed:\n\n{compared[0]}")
    sys.exit(1 if any(cells[1] == "failed" for cells in rows) else 0)


if __name__ == "__main__":
    main()
