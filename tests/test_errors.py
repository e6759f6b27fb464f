"""Errors by type (errors.py): which exceptions become one line and exit code 2, and that
everything else keeps its traceback, whatever its message says or wherever it was raised."""

import errno
import warnings

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

from project.commands.cli import main
from project.errors import UserError, user_line


def test_what_a_user_can_fix_is_one_line() -> None:
    assert user_line(UserError("--x is 0;\nfix: 1")) == "--x is 0; fix: 1"
    assert user_line(MisconfigurationException("No supported gpu backend found!")).endswith(
        "fix: change the --trainer setting it names")
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x.ckpt")
    assert "no space left" in user_line(full) and "/data/x.ckpt" in user_line(full)
    try:  # the CPU allocator's own refusal, for real
        torch.empty(2**50)
    except RuntimeError as error:
        assert user_line(error).startswith("not enough memory for this model and batch (it asked for")
    assert user_line(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) is not None


@pytest.mark.parametrize("error", [ValueError("bad value in lightning/pytorch/trainer"), KeyError("x"),
                                   RuntimeError("CUDA error: out of memory in my own kernel"),
                                   OSError(errno.EACCES, "Permission denied"), TypeError("a bug")])
def test_anything_else_is_a_bug_with_its_traceback(error: Exception) -> None:
    """Not told by their words: an "out of memory" in a message, a ValueError from Lightning."""
    assert user_line(error) is None


def test_debug_shows_the_traceback_of_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECT_DEBUG", "0")  # and put back as it was: --debug sets it for the process
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--model.hidden_size=-3"])
    assert exit_.value.code == 2
    with pytest.raises(UserError, match="hidden_size"):
        main(["--debug", "fit", "--model.hidden_size=-3"])


def test_warning_filters_last_as_long_as_the_command(capsys: pytest.CaptureFixture) -> None:
    before = list(warnings.filters)
    main(["env", "--format=json"])
    assert warnings.filters == before
