"""``benchmarks/gpu.py --smoke --device cpu``: the GPU benchmark's code, run end to end on CPU as CI
can (issue 20). Its table has every row, every ratio it prints is a finite positive number, and
the figures it reads back from its runs are the runs' own."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, child_env, finish

ROWS = {f"fit {cell} {precision} {shape}" for cell in ("lstm", "gru") for precision in ("fp32", "bf16")
        for shape in ("bbc", "sst2")} | {f"predict lstm {p} bbc" for p in ("fp32", "bf16")} | {
        f"memory {cell} {p} bbc" for cell in ("lstm", "gru") for p in ("fp32", "bf16")} | {
        "syncs", "bbc default fit", "ddp bf16 bbc", "compare lstm vs gru", "pretrain lstm bbc"}
NO_RATIO_ON_CPU = {"syncs", "ddp bf16 bbc"} | {row for row in ROWS if row.startswith("memory")}


@pytest.mark.slow
def test_smoke_prints_every_row_with_finite_positive_ratios(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # One thread per process: the smoke checks the code, not speed, and on a busy 2-core machine two
    # threads fighting other processes for the cores ran LSTM steps 100x slower.
    env = {**child_env(tmp_path), "OMP_NUM_THREADS": "1"}  # and a datasets cache of its own
    process = subprocess.Popen([sys.executable, "benchmarks/gpu.py", "--smoke", "--device", "cpu", "--out", str(out)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # finish() ends it with the fits it started
    stdout, stderr = finish(process, timeout=240)
    assert process.returncode == 0, stderr[-3000:] + stdout[-3000:]
    assert stdout.startswith("Device: CPU"), stdout[:500]

    lines = stdout.split("| row | measured | against | ratio | notes |\n|---|---|---|---|---|\n", 1)[1]
    rows = {}
    for line in lines.split("\n\n", 1)[0].splitlines():
        label, measured, against, ratio, notes = (cell.strip() for cell in line.strip("|").split("|"))
        rows[label] = {"measured": measured, "against": against, "ratio": ratio, "notes": notes}
    assert set(rows) == ROWS, sorted(set(rows) ^ ROWS)
    # Rows whose bare layer has no bf16 kernel on this CPU (an AVX2-only one: oneDNN's LSTM) say
    # so, and only those: the child's own probe, in the same environment, decides which.
    probe = subprocess.run([sys.executable, "-c", "import torch; from project.model.encoders import autocast_runs; "
                            "print(not autocast_runs('lstm', torch.bfloat16))"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    lstm_bf16 = {label for label in ROWS if label.split()[1:3] == ["lstm", "bf16"]}
    expected = lstm_bf16 if probe.stdout.strip() == "True" else set()
    assert {label for label, row in rows.items() if row["measured"] == "unsupported"} == expected
    for label, row in rows.items():
        if label in expected:
            assert row["ratio"] == "n/a" and "no bf16 LSTM kernel" in row["notes"], (label, row)
            continue
        if label in NO_RATIO_ON_CPU:
            assert row["ratio"] == "n/a", (label, row)
            continue
        ratio = float(row["ratio"])
        assert math.isfinite(ratio) and ratio > 0, (label, row)
    assert rows["syncs"]["measured"] == "n/a (CPU)"
    assert "backend gloo" in rows["ddp bf16 bbc"]["notes"]  # configs/ddp.yaml ran: gloo here, NCCL on a GPU
    assert "synthetic" in rows["fit lstm fp32 sst2"]["notes"]  # --smoke: no SST-2 to tokenize

    # What it read back is what its runs wrote: the default fit's test accuracy, compare's report.
    metrics = json.loads(next((out / "fit").glob("lightning_logs/*version_*/metrics.json")).read_text())
    assert f"test acc {metrics['test']['test/acc']:.4f}" in rows["bbc default fit"]["measured"]
    runs = json.loads((out / "compare" / "compare.json").read_text())["runs"]
    assert sorted((r["cell_type"], r["seed"]) for r in runs) == [("gru", 1), ("lstm", 1)]  # --smoke: one seed
    rate = {c: next(r["train_tokens_per_s"] for r in runs if r["cell_type"] == c) for c in ("lstm", "gru")}
    assert float(rows["compare lstm vs gru"]["ratio"]) == pytest.approx(rate["gru"] / rate["lstm"], abs=0.006)
    assert "GRU trains faster than LSTM?" in stdout.split("compare printed:", 1)[1]
    assert (out / "fit.log").is_file() and (out / "compare.log").is_file()  # the runs' output, kept
