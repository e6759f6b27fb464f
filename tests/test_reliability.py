"""Runs die and must lose nothing. A real ``python -m project fit`` process sent SIGTERM from
outside at a moment the test does not choose (as a scheduler pre-empting it) saves the step it
was in, exits 143, and ``--ckpt_path last`` ends bit-identical to a run never stopped (so one
seed also gives one result across processes). A fit SIGKILLed at each stage of writing the
tokenized cache (the child kills itself at that file operation: the race is controlled, not
won) leaves nothing a later run trusts. (test_generated_resume.py stops runs at generated points.)"""

import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from datasets import load_from_disk

from tests.helpers import ForkServer, finish, last_checkpoint, printed_test_metrics, run_dir, start, write_splits

STOP = re.compile(r"stopped by SIGTERM after step (\d+); saved .*last\.ckpt")
STEPS = 80  # 20 epochs of 4 steps


def stopped_from_outside(config: Path, root: Path) -> tuple[str, str]:
    """A fit sent SIGTERM a random 0 to 0.5 s after its first last.ckpt (step 5): a moment the
    test does not choose, so unseeded on purpose (the step it hit is in the stop message). A fit
    the signal reached only after its last training step (it ended, or was testing) lost the
    race: it runs again in a fresh folder with the delay bound quartered, so a stop mid-training
    is always exercised."""
    bound = 0.5
    for _ in range(5):
        shutil.rmtree(root, ignore_errors=True)
        process = start(["fit", f"--config={config}", f"--trainer.default_root_dir={root}"], root.parent)
        while not list(root.glob("lightning_logs/*version_0/checkpoints/last.ckpt")) and process.poll() is None:
            time.sleep(0.01)
        time.sleep(random.Random().uniform(0, bound))
        process.send_signal(signal.SIGTERM)  # nothing, if it has ended
        out, err = finish(process)
        if process.returncode == 128 + signal.SIGTERM and STOP.search(err):
            return out, err
        assert process.returncode in (0, 128 + signal.SIGTERM), err[-3000:]  # too late: ended, or testing
        bound /= 4
    raise AssertionError(f"SIGTERM came too late 5 times; the last run said: {err[-3000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, fork_server: ForkServer) -> dict:
    """Two fits of one config (20 epochs of 4 steps, validated every 5, seed 7): one
    uninterrupted, one sent SIGTERM at a random moment after its first last.ckpt, then resumed
    with the checkpoint the stop message names. The stopped one is a ``python -m project`` of its
    own, signalled from here; the other two are forked from the fork server (no imports to pay).
    Each: (root, stdout, stderr; the forked runs': their output, and stderr ""); "stop" is the
    stopped run's output (its stderr ends with the stop message); "stop step": the step of the
    last.ckpt the stop left."""
    tmp = tmp_path_factory.mktemp("reliability")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"data_files": write_splits(tmp), "text_column": "sentence", "min_frequency": 1, "batch_size": 16,
                 "cache_dir": str(tmp / "cache")},
        "model": {"embedding_dim": 8, "hidden_size": 8, "word_dropout": 0.2},
        "trainer": {"max_epochs": 20, "check_val_every_n_epoch": 5, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "last_checkpoint": {"every_n_train_steps": 5},
        "seed_everything": 7,
    }))
    roots = {name: tmp / name for name in ("first", "stopped")}
    code, output = fork_server.run("fit", f"--config={config}", f"--trainer.default_root_dir={roots['first']}")
    assert code == 0, output[-3000:]
    done = {"first": (output, "")}
    done["stop"] = stopped_from_outside(config, roots["stopped"])
    stop_step = last_checkpoint(roots["stopped"])[1]
    # Resumed as the stop message says: with the checkpoint's own path (2026-12-05 trial: it said
    # "--ckpt_path last", the newest run under the root, not necessarily this one).
    hint = re.search(r"to go on: python -m project fit <the same arguments> --ckpt_path (\S+)$",
                     done["stop"][1].strip().splitlines()[-1])
    assert hint and Path(hint.group(1)).is_file() and hint.group(1).endswith("last.ckpt"), done["stop"][1][-500:]
    code, output = fork_server.run("fit", f"--config={config}", f"--trainer.default_root_dir={roots['stopped']}",
                                   f"--ckpt_path={hint.group(1)}")
    assert code == 0, output[-3000:]
    done["stopped"] = (output, "")
    return {"stop step": stop_step,
            **{name: (roots.get(name, roots["stopped"]), *output) for name, output in done.items()}}


@pytest.mark.slow
def test_sigterm_saves_its_step_and_the_resumed_run_ends_the_same(runs) -> None:
    # Also: one seed gives one result, across processes (the resumed run started afresh).
    step = int(STOP.search(runs["stop"][2].strip().splitlines()[-1]).group(1))
    assert "Traceback" not in runs["stop"][2]
    # The last.ckpt the stop wrote is at the step it named, mid-run: the resumed run goes on from there.
    assert step == runs["stop step"] and 5 <= step < STEPS
    whole, resumed = last_checkpoint(runs["first"][0]), last_checkpoint(runs["stopped"][0])
    assert resumed[1] == whole[1] == STEPS and set(whole[0]) == set(resumed[0])
    assert all(torch.equal(whole[0][k], resumed[0][k]) for k in whole[0])  # bit-identical on CPU
    # The same best checkpoint was kept and tested, so the test metrics printed are the same.
    assert printed_test_metrics(runs["first"][1]) == printed_test_metrics(runs["stopped"][1])
    # It went on in its own run folder: one version, one history of checkpoints.
    assert [p.name for p in (runs["stopped"][0] / "lightning_logs").iterdir()] == [run_dir(runs["stopped"][0]).name]


# Where the child kills itself while it writes a cache entry (Python audit events, seen in this
# order): the partial folder begun, train written and validation begun, all but the marker of a
# whole entry, and the whole entry not yet renamed into place.
CACHE_WRITE_STAGES = {
    "begun": ("open", r"\.tmp/splits/dataset_dict\.json$"),
    "half written": ("open", r"\.tmp/splits/validation/data-[^/]*\.arrow$"),
    "all but meta.json": ("open", r"\.tmp/meta\.json$"),
    "not renamed": ("os.rename", r"\.tmp$"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(CACHE_WRITE_STAGES))
def test_a_kill_while_the_cache_is_written_leaves_nothing_trusted(fork_server, tmp_path: Path, stage: str) -> None:
    train = write_splits(tmp_path, validation=0, test=0)["train"]
    cache = tmp_path / "cache"
    args = ["fit", f"--data.data_files={{train: {train}}}", "--data.text_column=sentence", f"--data.cache_dir={cache}",
            "--trainer.max_steps=1", "--test_after_fit=false", f"--trainer.default_root_dir={tmp_path}"]
    code, output = fork_server.run(*args, kill_at=CACHE_WRITE_STAGES[stage])
    assert code == -signal.SIGKILL, output[-3000:]  # killed where the test chose, every time
    left = sorted(p.name for p in cache.iterdir())
    assert len(left) == 1 and left[0].startswith(".") and left[0].endswith(".tmp"), left  # a partial folder only
    key = left[0].split(".")[1]  # .KEY.TOKEN.PID.tmp
    # The same command again: it builds the entry the killed fit was writing, trusting none of it.
    code, output = fork_server.run(*args)
    assert code == 0 and f"Tokenized data cached in {cache}." in output, output[-3000:]
    splits = load_from_disk(str(cache / key / "splits"))
    assert (cache / key / "meta.json").is_file() and sum(map(len, splits.values())) == 60
