"""What a run ran on: the machine (CPU model and torch's CPU capability, GPUs) and the library
versions. The model card and metrics.json record ``hardware``; ``python -m project env`` prints
``report`` for a bug report (as ``datasets-cli env`` and ``transformers env`` do), one line each,
or ``--format json``."""

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal

import torch

# The libraries a bug report needs, in the order printed.
LIBRARIES = ("torch", "lightning", "datasets", "tokenizers", "torchmetrics", "jsonargparse", "optuna", "onnxruntime")


def cpu_model() -> str:
    """The CPU's model name: Linux names it in /proc/cpuinfo; platform.processor() often says
    only "x86_64"."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())


def cpu() -> str:
    """Model, logical cores and torch's CPU capability (``AVX2``, ``AVX512``: which kernels run,
    and so which figures a run can reach), e.g. ``AMD EPYC (2 logical cores, AVX512)``."""
    return f"{cpu_model()} ({os.cpu_count()} logical cores, {torch.backends.cpu.get_cpu_capability()})"


def gpus() -> str:
    if not torch.cuda.is_available():
        return "none"
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str | None:
    """The git commit of the checkout the project runs from, if it runs from one (an editable install)."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def hardware(trainer) -> dict[str, str]:  # noqa: ANN001 - a lightning.Trainer
    """The machine a run trained on (model card, metrics.json): CPU and its capability, GPU
    name (CUDA), devices, library versions."""
    import lightning

    device = trainer.strategy.root_device
    return {"CPU": cpu(), "GPU": torch.cuda.get_device_name(device) if device.type == "cuda" else "none used",
            "devices": f"{trainer.num_devices} × {device.type}, {trainer.num_nodes} node(s)",
            "torch": torch.__version__, "lightning": lightning.__version__, "Python": platform.python_version(),
            "OS": platform.platform()}


def report() -> dict[str, str]:
    """One entry per line of ``python -m project env``."""
    commit = _commit()
    facts = {"project": _version("project") + (f" (git {commit})" if commit else ""),
             "Python": f"{platform.python_version()} ({sys.executable})"}
    for name in LIBRARIES:
        facts[name] = _version(name)
    facts["torch"] += f" (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})" if torch.version.cuda \
        else " (CPU build)"
    facts.update({"OS": platform.platform(), "CPU": cpu_model(),
                  "CPU capability": torch.backends.cpu.get_cpu_capability(),
                  "threads": f"{torch.get_num_threads()} (torch), {os.cpu_count()} logical cores", "GPUs": gpus()})
    return facts


def env(format: Literal["text", "json"] = "text") -> None:
    """Print what this project runs on, for a bug report: paste it into the issue.

    Args:
        format: ``text``: one ``name: value`` line each; ``json``: one JSON object.
    """
    facts = report()
    print(json.dumps(facts, indent=1) if format == "json" else "\n".join(f"{k}: {v}" for k, v in facts.items()))


def add_arguments(parser) -> None:  # noqa: ANN001 - the subcommand's parser (cli.py)
    """``env``'s flags, on its subcommand parser (cli.py)."""
    parser.add_function_arguments(env, fail_untyped=True)


def run(config: dict) -> None:
    env(**{k: v for k, v in config.items() if k != "config"})
    sys.stdout.flush()
