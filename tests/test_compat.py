"""project/compat.py holds every use of a dependency's private API: one test per touch point,
on the real dependency, that fails when the dependency moves it; and a scan of the package that
fails when a private attribute of Lightning, datasets or jsonargparse is used anywhere else."""

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from datasets import Dataset
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from project import compat

PACKAGE = Path(__file__).resolve().parent.parent / "project"
# Names with one leading underscore that are public API (namedtuple's); dunders are the language's.
PUBLIC = {"_replace", "_asdict", "_fields", "_make"}
ACCESS = re.compile(r"(?:\w+|\))\.(_(?!_)\w+)")  # x._name, super()._name


def tiny_trainer(tmp_path: Path, **kwargs) -> L.Trainer:  # noqa: ANN003 - Trainer's
    return L.Trainer(default_root_dir=tmp_path, max_steps=3, limit_val_batches=0, logger=False,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


def test_logged_step_counts_the_optimizer_steps(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, accumulate_grad_batches=2, enable_checkpointing=False)
    trainer.fit(BoringModel())
    assert trainer.global_step == 3
    assert compat.logged_step(trainer) == 3  # batches that stepped: the step Lightning logs at


def test_uses_distributed_sampler_is_the_trainer_setting(tmp_path: Path) -> None:
    assert compat.uses_distributed_sampler(tiny_trainer(tmp_path, use_distributed_sampler=False)) is False
    assert compat.uses_distributed_sampler(tiny_trainer(tmp_path, use_distributed_sampler=True)) is True


def test_fingerprint_follows_the_content() -> None:
    one = Dataset.from_dict({"text": ["a", "b"]})
    assert isinstance(compat.fingerprint(one), str) and compat.fingerprint(one)
    assert compat.fingerprint(one.map(lambda row: {"text": row["text"] * 2})) != compat.fingerprint(one)


def test_save_last_checkpoint_writes_last_once_per_step(tmp_path: Path) -> None:
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=False, save_top_k=0)
    trainer = tiny_trainer(tmp_path, callbacks=[callback])
    trainer.fit(BoringModel())  # nothing saved
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert not last.exists()
    callback.save_last = True
    compat.save_last_checkpoint(callback, trainer)
    assert torch.load(last, weights_only=False)["global_step"] == 3
    stamp = last.stat().st_mtime_ns
    compat.save_last_checkpoint(callback, trainer)  # this step's is written: not again
    assert last.stat().st_mtime_ns == stamp


def _own_names(source: str) -> set[str]:
    """Underscored names a module defines: functions, methods, attributes and ``self._x = ...``."""
    groups = re.findall(r"def (_\w+)|^\s*(_\w+)\s*[:=]|self\.(_\w+)(?=[^\n=]*=[^=])", source, re.M)
    return {name for group in groups for name in group if name}


OURS = set().union(*(_own_names(p.read_text()) for p in PACKAGE.rglob("*.py")))


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "compat.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_attribute_of_a_dependency_outside_compat(path: Path) -> None:
    """``x._name`` (``super()._name`` too) where ``_name`` is no name of this project's own: a
    private attribute of a dependency, inherited or not."""
    code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())  # comments may name them
    found = {m.group(0) for m in ACCESS.finditer(code) if m.group(1) not in PUBLIC | OURS}
    assert not found, f"{path.name} uses private attributes (move them to project/compat.py): {sorted(found)}"


def test_the_scan_finds_a_private_attribute(tmp_path: Path) -> None:
    """The scan above would catch each touch point compat.py holds, were it anywhere else."""
    code = (PACKAGE / "compat.py").read_text()
    found = {m.group(1) for m in ACCESS.finditer(code)} - PUBLIC - OURS
    assert {"_batches_that_stepped", "_accelerator_connector", "_fingerprint", "_save_last_checkpoint"} <= found
