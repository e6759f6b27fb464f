"""``python -m project tune``: hyperparameter search with Optuna, each trial an ordinary ``fit``.

Takes everything ``fit`` takes (``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``) plus
the study's flags (``FLAGS``). Each trial samples the knobs of the ``--space`` file (TPE), then
runs ``fit`` in this process through the same CLI, with those knobs as flags, its own run folder
``tune/<study>/trial_N`` (TensorBoard events, HParams, metrics.json, checkpoints, fit.log) and
Optuna's Lightning pruning callback on ``val/f1`` (median pruner); it never looks at the test
split. A trial's value is its best ``val/f1`` (metrics.json).

The study lives in a database: by default an SQLite file ``tune/<study>.db`` beside the runs;
``--storage`` takes any SQLAlchemy URL (PostgreSQL, MySQL) so that processes on several machines
share one study: Optuna hands each its own trials. ``--n_trials`` is the study's total of finished
(complete or pruned) trials: a re-run continues up to it, and every process stops when the study
has it. A trial cut short (Ctrl-C, SIGTERM, a crash) is marked failed and run again, once, by the
next ``tune``; one whose process vanished (SIGKILL, a lost machine) is marked failed once its
heartbeats have stopped for ``--heartbeat_grace_s``. The results: the trials table and the best
trial printed, ``trials.csv``, ``best.yaml`` (the best trial's whole config, which ``fit --config
best.yaml`` trains as is) and Optuna's plots (optimization history, parameter importances) in
``tune/<study>/``. This file: the flags, the space, the storage; study.py runs the trials.
"""

import argparse
import difflib
import math
import time
import warnings
from pathlib import Path

import optuna
import yaml
from jsonargparse import ArgumentParser

from project.commands.compare import fit_arguments, whole_number
from project.errors import UserError
from project.training.runs import data_name


def _study_name(text: str) -> str | None:
    if not isinstance(text, str):
        return text
    # It names a file (tune/<study>.db) and a folder (tune/<study>/): one plain name.
    if not text.strip() or any(c in text for c in "/\\\0") or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"'{text}' is not a plain name (it names tune/<study>.db and a folder); "
                                         "fix: e.g. --study_name sst2-lstm, without / or \\")
    return text


def _seconds(text: str) -> float | None:
    if not isinstance(text, str):
        return text
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds above 0; fix: e.g. --timeout 1200")
    return seconds


# tune's own flags; every other argument is fit's, passed to every trial as given.
FLAGS = {
    "--n_trials": (whole_number(1, "--n_trials 20"), 20, "Finished (complete or pruned) trials the study should hold; a re-run continues up to it."),
    "--timeout": (_seconds, None, "Start no trial after this many seconds of this command."),
    "--study_name": (_study_name, None, "The study (default: the data's name, e.g. bbc_news, sst2)."),
    "--storage": (str, None, "An SQLAlchemy URL shared by every tune process, e.g. postgresql://user:pw@host/db "
                             "(default: the SQLite file tune/<study>.db under --trainer.default_root_dir)."),
    "--space": (str, None, "The search space: a YAML file of fit flags, each a range or choices (default: the "
                           "project's own, project/commands/space.yaml, from any folder)."),
    "--pruning": (bool, True, "Stop trials whose val/f1 is below the median of earlier trials at the same epoch."),
    "--pruner_startup_trials": (whole_number(0, "--pruner_startup_trials 5"), 5, "Trials that run to the end before any is pruned."),
    "--pruner_warmup_epochs": (whole_number(0, "--pruner_warmup_epochs 1"), 1, "Epochs of each trial that are never pruned."),
    "--heartbeat_grace_s": (whole_number(1, "--heartbeat_grace_s 60"), 60, "A trial without heartbeat for this long (its process is gone) is marked failed."),
}
SETS = ("test_after_fit", "trainer.logger", "ckpt_path")  # set by tune for every trial
SPEC_KEYS = {"low", "high", "log", "step", "choices"}
SPACE = Path(__file__).with_name("space.yaml")  # the default search space, shipped with the package


def add_arguments(parser: ArgumentParser) -> None:
    """tune's flags, on its subcommand parser (cli.py), which also holds every fit flag."""
    for flag, (kind, default, text) in FLAGS.items():
        parser.add_argument(flag, type=kind, default=default, help=text)


def _knobs(config: dict, prefix: str = "") -> list[str]:
    """Every fit flag of the parsed config, dotted: model.learning_rate, trainer.max_epochs ..."""
    keys = []
    for key, value in config.items():
        keys += _knobs(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return keys


def read_space(path: str, knobs: list[str]) -> dict[str, dict]:
    """The search space, every entry checked: a fit flag, and a non-empty range or list of choices."""
    where = Path(path)
    if not where.is_file():
        raise UserError(f"--space {path}: no such file; fix: pass a YAML search space ({SPACE} shows one), or leave "
                        "--space out for that one")
    try:
        space = yaml.safe_load(where.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"--space {path}: not valid YAML ({' '.join(str(error).split())[:200]}); fix: correct it") from None
    if not isinstance(space, dict) or not space:
        raise UserError(f"--space {path} holds no knob; fix: one line per fit flag, e.g. "
                        f"model.learning_rate: {{low: 0.0003, high: 0.03, log: true}}")
    for knob, spec in space.items():
        knob = str(knob)
        if knob not in knobs and any(k.startswith(f"{knob}.") for k in knobs):  # row 65 of the 2026-12-05 trial
            raise UserError(f"--space {path}: {knob} is a mapping of settings, not one value a trial can pick; fix: "
                            f"leave it out of the space (pass it to tune as a fit flag; every trial takes it)")
        if knob not in knobs or knob.startswith(SETS):
            close = difflib.get_close_matches(knob, knobs, n=1)
            why = "tune sets it itself" if knob.startswith(SETS) else "not a fit flag"
            raise UserError(f"--space {path}: unknown knob '{knob}' ({why}); fix: "
                            + (f"did you mean {close[0]}?" if close and not knob.startswith(SETS) else
                               "a flag of `python -m project fit --help`, without the --"))
        if not isinstance(spec, dict) or not set(spec) <= SPEC_KEYS or ("choices" in spec) == ("low" in spec or "high" in spec):
            raise UserError(f"--space {path}: {knob} is {spec!r}; fix: {{low: A, high: B}} (log: true, step: N "
                            f"optional) or {{choices: [a, b]}}")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices or not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
                raise UserError(f"--space {path}: {knob} has choices {choices!r}; fix: a non-empty list of plain values")
            continue
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise UserError(f"--space {path}: {knob} needs numbers low and high (got {low!r}, {high!r}); fix: e.g. {{low: 0.0, high: 0.5}}")
        if not low < high:
            raise UserError(f"--space {path}: {knob} has an empty range (low {low}, high {high}); fix: a low below the high")
        if spec.get("log") and low <= 0:
            raise UserError(f"--space {path}: {knob} is log-uniform from {low}; fix: a low above 0, or log: false")
        # Optuna's rules for step, checked here (its own check is a traceback mid-study).
        step = spec.get("step")
        if step is not None:
            if not isinstance(step, int | float) or isinstance(step, bool) or not step > 0:
                raise UserError(f"--space {path}: {knob} has step {step!r}; fix: a number above 0, or no step")
            if spec.get("log"):
                raise UserError(f"--space {path}: {knob} has both log and step; fix: one of them (Optuna takes "
                                "no step on a log scale)")
    return space


def open_storage(url: str, grace_s: int, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``. Two processes opening a new database at once both create its
    tables, and one of them fails ("table studies already exists", seen with two tune processes
    on one new SQLite file): it tries again, and then finds them made."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # wait on another writer's lock
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=max(1, grace_s // 4),
                                                  grace_period=grace_s)
        except Exception as error:  # SQLAlchemy's: a bad URL, no server, no driver, a folder that is not there
            failure = error
            if "already exists" not in str(error) and "UNIQUE constraint" not in str(error):
                break
            time.sleep(0.5 * (attempt + 1))
    first = (str(failure).strip().splitlines() or [type(failure).__name__])[0][:200]
    raise UserError(f"--storage {url}: cannot be opened ({first}); fix: a reachable SQLAlchemy URL, e.g. "
                    f"sqlite:///tune/study.db or postgresql://user:password@host/db (pip install psycopg2-binary)")


def run(config: dict, given: list[str]) -> None:
    """Run tune as parsed; ``given`` are its raw arguments (those after ``tune``)."""
    from project.commands.study import tune  # noqa: PLC0415 - it runs fit through cli.py, which imports this module

    fit_args = fit_arguments(given, FLAGS)
    if any(a.split("=")[0].removeprefix("--").startswith(SETS) for a in fit_args):
        raise UserError(f"tune sets {', '.join('--' + s for s in SETS)} for every trial itself; fix: leave them out")
    config["space"] = config["space"] or str(SPACE)
    space = read_space(config["space"], _knobs({k: v for k, v in config.items() if f"--{k}" not in FLAGS}))
    if config["model"].get("init_from"):  # its language model fixes the sizes and the tokenizer: not tunable
        from project.model.pretrained import SHAPE  # noqa: PLC0415 - torch, as study's import above

        fixed = [knob for knob in space if knob in {f"model.{key}" for key in SHAPE} | {"data.tokenizer"}]
        if len(fixed) == len(space):
            raise UserError(f"--space {config['space']} tunes only what --model.init_from fixes ({', '.join(fixed)}); "
                            "fix: a space of other knobs (learning rate, dropouts ...)")
        if fixed:
            print(f"tune: --model.init_from fixes {', '.join(fixed)} (the language model's): not tuned", flush=True)
        space = {knob: spec for knob, spec in space.items() if knob not in fixed}
    root = Path(config["trainer"].get("default_root_dir") or ".")
    study_name = config["study_name"] or data_name(config["data"])
    storage = config["storage"] or f"sqlite:///{root / 'tune' / f'{study_name}.db'}"
    if config["storage"] is None:
        (root / "tune").mkdir(parents=True, exist_ok=True)
    tune(fit_args, space, study_name, open_storage(storage, config["heartbeat_grace_s"]), root / "tune" / study_name,
         config)
