"""``--trainer.precision bf16-mixed`` on CPU (issue 20): a tiny fit trains, its losses stay finite,
and it ends near the fp32 fit of the same seed and data; ``predict --precision bf16-mixed`` labels
the test texts as fp32 does, with probabilities within 2e-2."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from project.model.encoders import autocast_runs
from tests.helpers import child_env, run_cli, run_dir, scalars, tiny_data

PRECISIONS = ("32-true", "bf16-mixed")
STEPS = 24  # 60 rows in batches of 16: 4 steps an epoch, so 6 epochs and 6 validations
TOLERANCE = 2e-2  # predict's probabilities, bf16 against fp32


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("precision")


@pytest.fixture(scope="module")
def runs(folder: Path) -> dict[str, Path]:
    """The run folder of a tiny fit in each precision: same data, same seed (the CLI's 42)."""
    data = tiny_data(folder)
    found = {}
    for precision in PRECISIONS:
        root = folder / precision
        code, err = run_cli(["fit", *data, "--trainer.accelerator=cpu", f"--trainer.precision={precision}",
                             f"--trainer.max_steps={STEPS}", "--trainer.log_every_n_steps=1",
                             f"--trainer.default_root_dir={root}"])
        assert code == 0, err[-3000:]
        found[precision] = run_dir(root)
    return found


@pytest.mark.slow
def test_bf16_fit_trains_and_ends_near_fp32(runs: dict[str, Path]) -> None:
    losses = {p: scalars(run)["train/loss_step"] for p, run in runs.items()}
    final = {p: json.loads((run / "metrics.json").read_text())["final"] for p, run in runs.items()}
    fp32, bf16 = (losses[p] for p in PRECISIONS)
    assert len(bf16) == len(fp32) == STEPS
    assert all(math.isfinite(loss) for loss in bf16), bf16
    # bf16 really ran: with the same seed and batches, fp32 computes other numbers.
    assert bf16 != fp32
    # It learned as fp32 did: near the same training-loss curve (here within 0.004 of it) ...
    assert max(abs(a - b) for a, b in zip(bf16, fp32)) < 0.05, (bf16, fp32)
    # ... and to near the same validation figures. fp32 learned (chance: 1/3), so a bf16 run that
    # did not would fail here.
    assert final["32-true"]["val/acc"] > 0.5, final
    for metric, tolerance in (("val/acc", 0.14), ("val/f1", 0.15), ("val/loss", 0.05)):  # 0.14: 2 of 15 texts
        assert final["bf16-mixed"][metric] == pytest.approx(final["32-true"][metric], abs=tolerance), metric


@pytest.mark.slow
def test_bf16_predict_labels_as_fp32(runs: dict[str, Path], folder: Path, tmp_path: Path) -> None:
    checkpoint, texts = runs["32-true"] / "checkpoints" / "last.ckpt", folder / "test.csv"  # tiny_data's texts
    predicted = {}
    for precision in PRECISIONS:
        output = tmp_path / f"{precision}.jsonl"
        code, err = run_cli(["predict", f"--ckpt_path={checkpoint}", f"--input={texts}", "--text_column=sentence",
                             f"--precision={precision}", f"--output={output}"])
        assert code == 0, err[-3000:]
        predicted[precision] = [json.loads(line) for line in output.read_text().splitlines()]
    fp32, bf16 = (predicted[p] for p in PRECISIONS)
    assert len(fp32) == len(bf16) == 15
    clear = 0  # texts whose label no error within the tolerance can flip
    for a, b in zip(fp32, bf16):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < TOLERANCE, (a, b)
        top, second = sorted(a["probabilities"].values(), reverse=True)[:2]
        if top - second > 2 * TOLERANCE:  # a near-tie may flip within the tolerance (here: 1 text of 15)
            clear += 1
            assert b["label"] == a["label"], (a, b)
    # The label check above is not vacuous: 6 of 15 here with the model's own probabilities (its
    # tiny validation split does not confirm a temperature, calibration.py), 12 with a fitted one.
    assert clear >= 5


# --- an AVX2-only CPU (issue 34), on any machine: oneDNN limited to AVX2 in a child process ---

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2"}  # oneDNN then has no bf16 LSTM, as on an AVX2-only CPU


def in_child(code: str, folder: Path, env: dict[str, str] = AVX2_ONLY) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python whose oneDNN sees only ``env``'s instruction set (it reads it once, at start)."""
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**child_env(folder), **env})


def test_the_avx2_limit_reproduces_the_missing_kernel_and_the_encoder_runs_in_fp32(tmp_path: Path) -> None:
    result = in_child("""
import torch
from project.model.encoders import RecurrentEncoder, autocast_runs
layer, x = torch.nn.LSTM(4, 4, batch_first=True), torch.randn(3, 5, 4)
try:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    print("bare LSTM ran")
except RuntimeError as error:
    print("bare LSTM:", str(error).split(".")[0])
print("probe:", autocast_runs("lstm", torch.bfloat16), autocast_runs("lstm", torch.float16),
      autocast_runs("gru", torch.bfloat16), autocast_runs("rnn", torch.bfloat16))
lengths = torch.tensor([5, 2, 1])
for cell in ("rnn", "lstm", "gru"):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(cell, 4, 4, num_layers=2)
    plain = encoder(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = encoder(x, lengths)
    mixed.float().sum().backward()
    print(cell, mixed.dtype, bool(torch.equal(mixed, plain)), bool(torch.allclose(mixed.float(), plain, atol=1e-5)),
          all(p.grad is not None for p in encoder.parameters()))
""", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # Not vacuous: under the limit torch's own LSTM fails as it did for users on AVX2-only CPUs.
    assert lines[0] == "bare LSTM: could not create a primitive descriptor for the LSTM forward propagation primitive"
    assert lines[1] == "probe: False False True True"
    # The LSTM runs in fp32 inside autocast: the very numbers of an fp32 forward, gradients for all.
    assert lines[3] == "lstm torch.float32 True True True"
    # The GRU and the tanh RNN have their kernels still: they compute in bf16 (the GRU's output is fp32).
    assert lines[4] == "gru torch.float32 False False True"
    assert lines[2] == "rnn torch.bfloat16 False False True"


def test_the_probe_leaves_the_random_state_alone() -> None:
    before = torch.get_rng_state()
    autocast_runs.cache_clear()
    assert autocast_runs("lstm", torch.float16) in (True, False)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_mixed_precision_on_an_avx2_cpu_trains_and_labels_with_one_line(tmp_path: Path) -> None:
    """fit, predict and the Python API under bf16-mixed and 16-mixed (Lightning runs 16-mixed as
    bf16-mixed on a CPU): exit 0, no traceback, one line saying the LSTM runs in fp32."""
    data = tiny_data(tmp_path)
    result = in_child(f"""
import json, sys
from tests.helpers import run_cli
from project import Predictor
for precision in ("bf16-mixed", "16-mixed"):
    code, err = run_cli(["fit", *{data!r}, "--trainer.max_steps=4", f"--trainer.precision={{precision}}",
                         f"--trainer.default_root_dir={{precision}}"])
    print(json.dumps(["fit", precision, code, err]))
checkpoint = next(__import__("pathlib").Path("bf16-mixed").rglob("last.ckpt"))
for precision in ("bf16-mixed", "16-mixed"):
    code, err = run_cli(["predict", f"--ckpt_path={{checkpoint}}", "--input=test.csv", "--text_column=sentence",
                         f"--precision={{precision}}", f"--output={{precision}}.jsonl"])
    print(json.dumps(["predict", precision, code, err]))
rows = Predictor.from_checkpoint(str(checkpoint), precision="bf16-mixed").predict(["good great film", "awful"])
print(json.dumps(["api", "bf16-mixed", len(rows), ""]))
""", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    said = "the LSTM layers run in fp32 (torch has no bfloat16 LSTM kernel for this CPU)"
    runs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
    assert [run[:2] for run in runs] == [["fit", "bf16-mixed"], ["fit", "16-mixed"], ["predict", "bf16-mixed"],
                                         ["predict", "16-mixed"], ["api", "bf16-mixed"]]
    for command, precision, code, err in runs[:4]:
        assert code == 0 and "Traceback" not in err, (command, precision, err[-3000:])
    assert runs[4][2] == 2
    # Lightning's logger prints to the process's stderr: once per command (not again for the test after fit).
    assert result.stderr.count(said) == 5 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len((tmp_path / "bf16-mixed.jsonl").read_text().splitlines()) == 15
