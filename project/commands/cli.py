"""``python -m project SUBCOMMAND ...``: the subcommand is read first, then its own parser reads
the rest and the command runs after parsing. ``fit``, ``validate`` and ``test`` are Lightning's
CLI (fit.py); ``compare`` and ``tune`` take every fit flag plus their own; ``predict``,
``export``, ``serve`` and ``env`` have parsers built from their functions' signatures.

Every refusal (a bad flag, YAML key, value, data file or checkpoint) is one ``error: ... fix:
...`` line on stderr and exit code 2, with no usage dump and no traceback (errors.py says which
errors those are); ``PROJECT_DEBUG=1`` shows every traceback."""

import difflib
import os
import sys
import textwrap
from pathlib import Path

from jsonargparse import ActionConfigFile

from project import environment
from project.commands import compare, tune
from project.inference import export, predict
from project.serving import serve
from project.training import arguments
from project.errors import UserError, one_line
from project.training.fit import AFTER_A_STOP as AFTER_A_FIT_STOP, COMMANDS, ProjectCLI, quiet_warnings, run_fit

# One line each in ``python -m project --help``.
SUBCOMMANDS = {
    **COMMANDS,
    "predict": "Label new text with a checkpoint (or an exported model) alone: one JSON line per text.",
    "compare": "LSTM or GRU? fit each cell type over seeds on your data, and report.",
    "tune": "Search hyperparameters with Optuna: each trial a fit, in a study that resumes and can be shared.",
    "export": "Write a checkpoint as an ONNX model with its tokenizer and labels: predicts without PyTorch.",
    "serve": "Answer POST /predict over HTTP (and a page to try it) with a checkpoint or an exported model.",
    "env": "Print the versions and the machine this project runs on, for a bug report.",
}
# Each module's add_arguments (its flags) and run (the whole command, from the parsed flags).
OWN = {"predict": predict, "export": export, "serve": serve, "env": environment}
# These take every fit flag as well: run(config, the arguments as given).
WITH_FIT_FLAGS = {"compare": compare, "tune": tune}

# What is kept when Ctrl-C or SIGTERM stops a command outside fit's training steps.
AFTER_A_STOP = {
    **AFTER_A_FIT_STOP,
    "predict": "an --output file is not written (it is put in place only when complete)",
    "compare": "run the same compare again: finished runs are kept and skipped",
    "tune": "run the same tune again: finished trials are kept, the one cut short runs again",
    "export": "the --output folder is not written (it is put in place only when complete and checked)",
    "serve": "the server stopped",
    "env": "nothing was written",
}
def top_help() -> str:
    names = ",".join(SUBCOMMANDS)
    lines = [f"usage: python -m project [-h] [--debug] {{{names}}} ...", "", "Recurrent text classifiers with "
             "Lightning: python -m project SUBCOMMAND --help documents each flag.", "", "options:",
             "  -h, --help  Show this help message and exit.",
             "  --debug     Show the traceback of every error, refusals too (as PROJECT_DEBUG=1 does).", "",
             "subcommands:"]
    for name, text in SUBCOMMANDS.items():
        wrapped = textwrap.wrap(text, 56)
        lines += [f"  {name:<10}{wrapped[0]}", *(f"  {'':<10}{more}" for more in wrapped[1:])]
    return "\n".join(lines)


def run_command(given: list[str], callbacks: list | None = None, run_dir: Path | None = None) -> ProjectCLI | None:
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
    if sub == "fit":
        return run_fit(rest, callbacks, run_dir)
    if sub in COMMANDS:
        cli = ProjectCLI(sub, rest)
        cli.run()
        return cli
    if sub in WITH_FIT_FLAGS:  # every fit flag, checked before its first run, and its own
        module = WITH_FIT_FLAGS[sub]
        cli = ProjectCLI("fit", rest, instantiate=False, prog=sub, description=SUBCOMMANDS[sub],
                         add_flags=module.add_arguments)
        module.run(cli.config.as_dict(), rest)
        return None
    parser = arguments.OneLineParser(prog=f"python -m project {sub}", description=SUBCOMMANDS[sub])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format.")
    OWN[sub].add_arguments(parser)
    arguments.check_config_files(rest)
    OWN[sub].run(parser.parse_args(rest).as_dict())
    return None


def main(args: list[str] | None = None, callbacks: list | None = None, run_dir: Path | None = None
         ) -> ProjectCLI | None:
    """Run a command. Bad input ends with one line on stderr and exit code 2. ``callbacks``: added
    to the Trainer's (tune's pruning callback); ``run_dir``: fit's run folder (compare's runs)."""
    given = list(sys.argv[1:] if args is None else args)
    if given[:1] == ["--debug"]:  # for this process and the fits it starts
        os.environ["PROJECT_DEBUG"], given = "1", given[1:]
    sub = next((a for a in given if a in SUBCOMMANDS), "fit")
    with one_line(AFTER_A_STOP[sub]), quiet_warnings():
        return run_command(given, callbacks, run_dir)
