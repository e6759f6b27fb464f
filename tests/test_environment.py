"""``python -m project env`` (issue 35): what a bug report needs, one line each, on a fresh install."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from project.commands.cli import main
from tests.helpers import ROOT, child_env, refused

LINES = ("project", "Python", "torch", "lightning", "datasets", "tokenizers", "torchmetrics", "jsonargparse", "optuna",
         "onnxruntime", "OS", "CPU", "CPU capability", "threads", "GPUs")


def env(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """The command as a user runs it: a fresh process, outside the checkout (the installed package)."""
    return subprocess.run([sys.executable, "-m", "project", "env", *flags], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=child_env(tmp_path))


def test_env_prints_every_line_a_bug_report_needs(tmp_path: Path) -> None:
    result = env(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert tuple(printed) == LINES
    assert printed["torch"].startswith(torch.__version__)
    assert printed["CPU capability"] == torch.backends.cpu.get_cpu_capability()
    assert printed["project"].startswith("0.1.0")
    if (ROOT / ".git").exists():  # run from this checkout: its commit
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        assert printed["project"].endswith(f"(git {head.stdout.strip()})")
    assert all(value and value != "not installed" for value in printed.values()), printed


def test_env_as_json_holds_the_same_facts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """In this process (the first test runs it as a user does): text and JSON, the same facts."""
    main(["env"])
    as_text = capsys.readouterr().out
    main(["env", "--format", "json"])
    assert json.loads(capsys.readouterr().out) == dict(line.split(": ", 1) for line in as_text.splitlines())


def test_env_refuses_an_unknown_format_in_one_line(tmp_path: Path) -> None:
    refused(["env", "--format", "xml"], tmp_path, "xml")
