"""The compare report: mean +- std over seeds per cell (and train fraction), one verdict per
folk claim about LSTM and GRU, every run in csv / json, and plots of validation accuracy."""

import csv
import json
import os
import platform
import statistics
from collections import defaultdict
from pathlib import Path

import torch

# record key, column header, number format
COLUMNS = [
    ("params", "trainable params", "{:,.0f}"),
    ("checkpoint_mb", "checkpoint MB", "{:.2f}"),
    ("memory_mb", "peak memory growth MB", "{:.0f}"),
    ("train_tokens_per_s", "train tokens/s", "{:,.0f}"),
    ("infer_tokens_per_s", "inference tokens/s", "{:,.0f}"),
    ("epoch_s", "epoch s", "{:.2f}"),
    ("time_to_best_s", "time to best val s", "{:.2f}"),
    ("best_val_acc", "best val acc", "{:.4f}"),
    ("best_val_f1", "best val macro-F1", "{:.4f}"),
    ("test_acc", "test acc", "{:.4f}"),
    ("test_f1", "test macro-F1", "{:.4f}"),
]
FORMATS = {key: fmt for key, _, fmt in COLUMNS}
# The folklore, as claims to check: (claim, record key, the cell it favours, higher is better).
CLAIMS = [
    ("GRU has fewer parameters than LSTM", "params", "gru", False),
    ("GRU uses less memory than LSTM", "memory_mb", "gru", False),
    ("GRU trains faster than LSTM", "train_tokens_per_s", "gru", True),
    ("GRU predicts faster than LSTM", "infer_tokens_per_s", "gru", True),
    ("LSTM is more accurate than GRU", "test_acc", "lstm", True),
]
GROWTH_CLAIM = "LSTM gains more accuracy than GRU as the training data grows"
# Below this many seeds per cell a measured (noisy) figure gets no verdict: one seed showed
# "GRU predicts faster 29.01x" on a machine shared with other work. Parameter counts are exact.
MIN_SEEDS = 3
EXACT = {"params"}
# Why a figure can be missing (None in a record, n/a in the table).
NOT_MEASURED = ("n/a: not measured by these runs (a run shorter than one epoch has no validation; "
                "data without a test split, no test figures)")


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def grouped(records: list[dict]) -> dict[float, dict[str, list[dict]]]:
    """train fraction -> cell type -> its runs (one per seed), in the order they ran."""
    groups: dict[float, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[record["train_fraction"]][record["cell_type"]].append(record)
    return groups


def accuracy_key(runs: list[dict]) -> str:
    """Test accuracy, or best validation accuracy when the data has no test split."""
    return "test_acc" if all(r["test_acc"] is not None for r in runs) else "best_val_acc"


def _describe(cell: str, values: list[float], key: str) -> str:
    fmt = FORMATS[key]
    text = f"{cell.upper()} {fmt.format(statistics.mean(values))}"
    if len(values) > 1 and min(values) != max(values):
        text += f" ({fmt.format(min(values))} to {fmt.format(max(values))})"
    return text


def verdict(claim: str, key: str, favoured: str, higher: bool, runs: dict[str, list[float | None]]) -> str:
    """``claim? yes | no, the opposite | no clear difference | not measured: figures``. Clear
    means the min-max ranges over seeds do not overlap; figures a run did not measure (None)
    are left out."""
    other = "lstm" if favoured == "gru" else "gru"
    mine, theirs = ([v for v in runs[cell] if v is not None] for cell in (favoured, other))
    if not mine or not theirs:
        missing = " and ".join(cell.upper() for cell, values in ((favoured, mine), (other, theirs)) if not values)
        return f"{claim}? not measured: no {key} figure for {missing}"
    figures = f"{_describe(favoured, mine, key)} vs {_describe(other, theirs, key)}"
    if key not in EXACT and min(len(mine), len(theirs)) < MIN_SEEDS:
        return (f"{claim}? no verdict possible from {min(len(mine), len(theirs))} seed(s) (at least {MIN_SEEDS} "
                f"needed, --seeds {MIN_SEEDS}): {figures}")
    if min(mine) <= max(theirs) and min(theirs) <= max(mine):
        return f"{claim}? no clear difference: {figures}; the ranges over seeds overlap"
    ratio = statistics.mean(mine) / statistics.mean(theirs) if statistics.mean(theirs) else float("nan")
    wins = (statistics.mean(mine) > statistics.mean(theirs)) == higher
    return f"{claim}? {'yes' if wins else 'no, the opposite'}: {figures} ({ratio:.2f}x)"


def growth_verdict(groups: dict[float, dict[str, list[dict]]]) -> str:
    """Per seed, the LSTM - GRU accuracy gap at the largest fraction minus at the smallest."""
    fractions = sorted(f for f in groups if {"lstm", "gru"} <= set(groups[f]))
    if len(fractions) < 2:
        return f"{GROWTH_CLAIM}? not measured: pass --train_fractions, e.g. 0.1,0.3,1.0"
    small, large = groups[fractions[0]], groups[fractions[-1]]
    key = accuracy_key(small["lstm"] + small["gru"] + large["lstm"] + large["gru"])
    gains = [
        (ll[key] - lg[key]) - (sl[key] - sg[key])
        for sl, sg, ll, lg in zip(small["lstm"], small["gru"], large["lstm"], large["gru"])
        if None not in (sl[key], sg[key], ll[key], lg[key])
    ]
    if not gains:
        return f"{GROWTH_CLAIM}? not measured: no {key} figures at both fractions"
    figures = (f"the LSTM - GRU {key.replace('_', ' ')} gap changes by "
               f"{', '.join(f'{g:+.4f}' for g in gains)} from {fractions[0]:g} to {fractions[-1]:g} of train")
    if min(gains) <= 0 <= max(gains):
        return f"{GROWTH_CLAIM}? no clear difference: {figures} (seed by seed)"
    return f"{GROWTH_CLAIM}? {'yes' if gains[0] > 0 else 'no, the opposite'}: {figures} (seed by seed)"


def verdicts(groups: dict[float, dict[str, list[dict]]]) -> list[str]:
    largest = groups[max(groups)]
    if not {"lstm", "gru"} <= set(largest):
        return ["The verdicts compare LSTM with GRU: include both in --cell_types."]
    lines = []
    for claim, key, favoured, higher in CLAIMS:
        if key == "test_acc":
            key = accuracy_key(largest["lstm"] + largest["gru"])
        runs = {cell: [r[key] for r in largest[cell]] for cell in ("lstm", "gru")}
        lines.append(verdict(claim, key, favoured, higher, runs))
    return lines + [growth_verdict(groups)]


def table(groups: dict[float, dict[str, list[dict]]]) -> str:
    fractions = len(groups) > 1
    header = ["cell", *(["train fraction"] if fractions else []), *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fraction in sorted(groups):
        for cell, runs in groups[fraction].items():
            cells = [cell, *([f"{fraction:g}"] if fractions else [])]
            for key, _, fmt in COLUMNS:
                values = [r[key] for r in runs if r[key] is not None]
                if not values:
                    cells.append("n/a")
                    continue
                if len(values) < MIN_SEEDS:  # a spread of 1-2 seeds says nothing: the values themselves
                    cells.append(" / ".join(fmt.format(v) for v in values))
                    continue
                cells.append(f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(groups: dict[float, dict[str, list[dict]]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    made = []
    largest = groups[max(groups)]
    curves = any(r["curve"] for runs in largest.values() for r in runs)  # none if no validation ran
    for x_index, name, label in ((1, "val_acc_vs_time.png", "seconds since fit started"),
                                 (0, "val_acc_vs_epoch.png", "epoch"))[: 2 if curves else 0]:
        figure, axes = plt.subplots(figsize=(6, 4))
        for cell, runs in largest.items():
            points = min(len(r["curve"]) for r in runs)  # every seed's curve, cut to the shortest
            xs = [statistics.mean(r["curve"][i][x_index] for r in runs) for i in range(points)]
            accs = [[r["curve"][i][2] for r in runs] for i in range(points)]
            axes.plot(xs, [statistics.mean(a) for a in accs], marker="o", label=cell.upper())
            axes.fill_between(xs, [min(a) for a in accs], [max(a) for a in accs], alpha=0.2)
        axes.set(xlabel=label, ylabel="validation accuracy", title="mean over seeds, band: min to max")
        axes.legend()
        figure.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        made.append(name)
    if len(groups) > 1:
        figure, axes = plt.subplots(figsize=(6, 4))
        fractions = sorted(groups)
        key = accuracy_key([r for f in fractions for runs in groups[f].values() for r in runs])
        for cell in largest:
            accs = [[r[key] for r in groups[f].get(cell, []) if r[key] is not None] for f in fractions]
            xs, accs = [f for f, a in zip(fractions, accs) if a], [a for a in accs if a]  # measured ones
            axes.plot(xs, [statistics.mean(a) for a in accs], marker="o", label=cell.upper())
            axes.fill_between(xs, [min(a) for a in accs], [max(a) for a in accs], alpha=0.2)
        axes.set(xscale="log", xlabel="share of the training split", ylabel=key.replace("_", " "),
                 title="mean over seeds, band: min to max")
        axes.legend()
        figure.savefig(out / "acc_vs_train_fraction.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        made.append("acc_vs_train_fraction.png")
    return made


def write(records: list[dict], out: Path, machine: str) -> str:
    """Write compare.md / .csv / .json and the plots into ``out``; return the printed report."""
    groups = grouped(records)
    said = verdicts(groups)
    gaps = any(r[key] is None for r in records for key, _, _ in COLUMNS)
    text = "\n".join([table(groups), "", *([NOT_MEASURED + ".", ""] if gaps else []), *said])
    images = plots(groups, out)
    # compare --pretrained: every cell from its own language model; said at the top, and per run.
    starts = {r["cell_type"]: r["init_from"] for r in records if r.get("init_from")}
    started = ("Each cell started from its pretrained language model (fit --model.init_from): "
               + ", ".join(f"{cell} from {run}" for cell, run in starts.items()) + ".\n\n") if starts else ""
    (out / "compare.md").write_text(
        f"# LSTM vs GRU vs RNN\n\nMachine: {machine}. Mean ± std over seeds (below {MIN_SEEDS} seeds, each seed's "
        f"value); the verdicts use the largest train fraction.\n\n{started}{text}\n\n" + "".join(f"![{i}]({i})\n" for i in images)
    )
    keys = ["cell_type", "seed", "train_fraction", "init_from", "wall_s", *(key for key, _, _ in COLUMNS)]
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    (out / "compare.json").write_text(json.dumps(
        {"machine": machine, "runs": records, "verdicts": said}, indent=1
    ))
    return f"Machine: {machine}\n\n{started}{text}"
