"""``python -m project SUBCOMMAND ...``: the subcommand is read first, then its own parser reads
the rest and the command runs after parsing. ``fit``, ``pretrain``, ``validate`` and ``test`` are Lightning's
CLI (training/fit.py); ``compare`` and ``tune`` take every fit flag plus their own; ``predict``,
``export``, ``serve`` and ``env`` have parsers built from their functions' signatures. A
command's modules are imported when it is chosen: ``env``, ``--help`` and ONNX's ``predict
--model`` start without Lightning.

Every refusal (a bad flag, YAML key, value, data file or checkpoint) is one ``error: ... fix:
...`` line on stderr and exit code 2, with no usage dump and no traceback (errors.py says which
errors those are); ``--debug`` or ``PROJECT_DEBUG=1`` shows every traceback."""

import difflib
import importlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile

from project.errors import UserError, one_line
from project.parser import OneLineParser, check_config_files

# One line each in ``python -m project --help``, and the top of each command's own --help.
SUBCOMMANDS = {
    "fit": "Train a classifier (then test its best checkpoint); --ckpt_path last goes on with a stopped run.",
    "pretrain": "Train a language model on the training text and any unlabelled text, to start fit from "
                "(fit --model.init_from RUN).",
    "lr_find": "Suggest a learning rate (Lightning's range test) for fit, or for pretrain: lr_find pretrain ...",
    "validate": "Score a checkpoint on the validation split.",
    "test": "Score a checkpoint on the test split.",
    "predict": "Label new text with a checkpoint (or an exported model) alone: one JSON line per text.",
    "compare": "LSTM or GRU? fit each cell type over seeds on your data, and report.",
    "tune": "Search hyperparameters with Optuna: each trial a fit, in a study that resumes and can be shared.",
    "export": "Write a checkpoint as an ONNX model with its tokenizer and labels: predicts without PyTorch.",
    "serve": "Answer POST /predict over HTTP (and a page to try it) with a checkpoint or an exported model.",
    "env": "Print the versions and the machine this project runs on, for a bug report.",
}
# Each module's add_arguments (its flags) and run (the whole command, from the parsed flags).
OWN = {"predict": "project.inference.predict", "export": "project.inference.export", "serve": "project.serving.serve",
       "env": "project.environment"}
# These take every fit flag as well: run(config, the arguments as given).
WITH_FIT_FLAGS = {"compare": "project.commands.compare", "tune": "project.commands.tune"}
# What is kept when Ctrl-C or SIGTERM stops a command outside fit's training steps.
AFTER_A_STOP = {
    "fit": "outside the training steps: fit --ckpt_path last goes on from the last checkpoint, if one was written",
    "pretrain": "outside the training steps: pretrain --ckpt_path last goes on from the last checkpoint, if one "
                "was written",
    "lr_find": "run it again (it writes only its plot, when done)",
    "validate": "run it again (it changes no checkpoint)",
    "test": "run it again (it changes no checkpoint)",
    "predict": "an --output file is not written (it is put in place only when complete)",
    "compare": "run the same compare again: finished runs are kept and skipped",
    "tune": "run the same tune again: finished trials are kept, the one cut short runs again",
    "export": "the --output folder is not written (it is put in place only when complete and checked)",
    "serve": "the server stopped",
    "env": "nothing was written",
}


def top_help() -> str:
    lines = [f"usage: python -m project [-h] [--debug] {{{','.join(SUBCOMMANDS)}}} ...", "",
             "Recurrent text classifiers with Lightning: python -m project SUBCOMMAND --help documents each flag.",
             "", "options:", "  -h, --help  Show this help message and exit.",
             "  --debug     Show the traceback of every error, refusals too (as PROJECT_DEBUG=1 does).", "",
             "subcommands:"]
    for name, text in SUBCOMMANDS.items():
        wrapped = textwrap.wrap(text, 56)
        lines += [f"  {name:<10}{wrapped[0]}", *(f"  {'':<10}{more}" for more in wrapped[1:])]
    return "\n".join(lines)


def run_command(given: list[str], callbacks: list | None = None, run_dir: Path | None = None) -> Any:
    """Parse ``given`` (the subcommand first) and run it; fit / validate / test return their CLI."""
    sub, rest = (given[0], given[1:]) if given else (None, [])
    if sub in ("-h", "--help"):
        print(top_help())
        sys.exit(0)
    if sub not in SUBCOMMANDS:
        close = difflib.get_close_matches(sub or "", SUBCOMMANDS, n=1)
        raise UserError(("no subcommand given" if sub is None else f"'{sub}' is not a subcommand") + "; fix: "
                        + (f"did you mean {close[0]}? " if close else "") + f"the first argument is one of "
                        f"{', '.join(SUBCOMMANDS)}")
    if sub in ("fit", "pretrain", "validate", "test"):
        from project.training.fit import ProjectCLI, quiet_warnings, run_fit  # noqa: PLC0415 - Lightning: on use

        with quiet_warnings():
            if sub == "fit":
                return run_fit(rest, callbacks, run_dir, description=SUBCOMMANDS[sub])
            cli = ProjectCLI(sub, rest, description=SUBCOMMANDS[sub])
            cli.run()
            return cli
    if sub == "lr_find":  # for fit (the default), or for pretrain: lr_find pretrain FLAGS
        from project.training.fit import ProjectCLI, quiet_warnings  # noqa: PLC0415

        model, rest = (rest[0], rest[1:]) if rest[:1] in (["fit"], ["pretrain"]) else ("fit", rest)
        with quiet_warnings():
            cli = ProjectCLI(model, rest, prog=f"lr_find {model}", description=SUBCOMMANDS[sub], find_lr=True)
            cli.run()
        return None
    if sub in WITH_FIT_FLAGS:  # every fit flag, checked before its first run, and its own
        from project.training.fit import ProjectCLI, quiet_warnings  # noqa: PLC0415

        module = importlib.import_module(WITH_FIT_FLAGS[sub])
        with quiet_warnings():
            cli = ProjectCLI("fit", rest, instantiate=False, prog=sub, description=SUBCOMMANDS[sub],
                             add_flags=module.add_arguments)
            module.run(cli.config.as_dict(), rest)
        return None
    module = importlib.import_module(OWN[sub])
    parser = OneLineParser(prog=f"python -m project {sub}", description=SUBCOMMANDS[sub])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format.")
    module.add_arguments(parser)
    check_config_files(rest)
    module.run(parser.parse_args(rest).as_dict())
    return None


def main(args: list[str] | None = None, callbacks: list | None = None, run_dir: Path | None = None) -> Any:
    """Run a command. Bad input ends with one line on stderr and exit code 2. ``callbacks``: added
    to the Trainer's (tune's pruning callback); ``run_dir``: fit's run folder (compare's runs)."""
    given = list(sys.argv[1:] if args is None else args)
    if given[:1] == ["--debug"]:  # for this process and the fits it starts
        os.environ["PROJECT_DEBUG"], given = "1", given[1:]
    sub = next((a for a in given if a in SUBCOMMANDS), "fit")
    with one_line(AFTER_A_STOP[sub], "pretrain" if sub == "pretrain" else "fit"):
        return run_command(given, callbacks, run_dir)


def fit_in_child(args: list[str], run_dir: Path, log: Path) -> None:
    """A fit as the target of a child process (compare's runs: each its own peak memory), its
    output to ``log``; its exit code says how it ended (2: a refusal, its line last in the log)."""
    with log.open("a") as out:
        os.dup2(out.fileno(), sys.stdout.fileno())
        os.dup2(out.fileno(), sys.stderr.fileno())
    main(["fit", *args], run_dir=run_dir)
