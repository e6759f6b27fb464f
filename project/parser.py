"""The parser of every command: jsonargparse's, with its usage dump replaced by one
``error: ... fix: ...`` line (a ``UserError``) and a close match for a misspelt flag; and the
config files checked first, for what jsonargparse would take in silence."""

import difflib
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import ArgumentParser

from project.errors import UserError


# Python types as jsonargparse names them, in the words of a fix.
KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text", "NoneType": "null",
         "dict": "a mapping", "list": "a list"}


class OneLine:
    """A jsonargparse parser's errors as one ``UserError`` line: the fix is a close flag, or the
    command's ``--help`` (mixed into the parsers below and into fit's, training/arguments.py)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying a type on an inner parser: its own error
            super().error(message, ex)
        text = " ".join(str(message).split())
        fix = f"check it against `{self.prog} --help`"
        flags = [f"--{key}" for key in self.get_defaults().keys()]  # every --a.b flag of this command
        quoted = re.search(r"unrecognized arguments: (--[\w.]+)[ =](\S.*)", text)
        if quoted and quoted.group(1) in flags:  # "--flag value" reached us as one argument
            text = f"'{quoted.group(1)} {quoted.group(2)}' came as one argument (the flag and its value quoted together)"
            fix = f"quote the value alone, or join them with =: {quoted.group(1)}='{quoted.group(2)}'"
        elif (top := re.search(r"Option '([\w-]+)\.[\w.-]+' is not accepted", text)) and not any(
                flag.startswith(f"--{top.group(1)}.") for flag in flags):
            # A section name no flag has: a typo, or a YAML anchor kept at the top (x-common: &common).
            sections = sorted({flag[2:].split(".")[0] for flag in flags if "." in flag})
            close = difflib.get_close_matches(top.group(1), sections, n=1)
            text = f"'{top.group(1)}' is not a section of the settings ({', '.join(sections)})"
            fix = (f"did you mean {close[0]}?" if close else "remove it (a YAML anchor goes on a section or setting "
                   "of its own, e.g. model: &m {...}, not on a key of its own)")
        elif match := re.search(r"unrecognized arguments: (--[\w.]+)|does not accept option '([\w.]+)'", text):
            close = difflib.get_close_matches(match.group(1) or f"--{match.group(2)}", flags, n=1)
            fix = f"did you mean {close[0]}?" if close else fix
        elif wrong := re.search(r'Parser key "([\w.]+)": (?:Does not validate against any of the Union subtypes '
                                r'Subtypes: \[(.*?)\]|Expected an? (<class [^>]*>))'
                                r'.*(?:Given value|Got value): (.*)$', text):
            # jsonargparse's "Does not validate against any of the Union subtypes ..." in the user's words.
            kinds = re.findall(r"<class '(\w+)'>", wrong.group(2) or wrong.group(3))
            wanted = " or ".join(dict.fromkeys(KINDS.get(k, k) for k in kinds))
            text = f"--{wrong.group(1)} is '{wrong.group(4)}'"
            fix = f"{wanted} (`{self.prog} --help` says more)" if wanted else f"what `{self.prog} --help` says it takes"
        # A type of ours (compare's --seeds ...) words its own fix.
        raise UserError(text if "; fix: " in text else f"{text}; fix: {fix}") from None


class OneLineParser(OneLine, ArgumentParser):
    """The parser of predict, export, serve and env: built from their functions' signatures."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: valid YAML, merged by SafeLoader below
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _sets(config: Any, dotted: str) -> bool:
    """Whether a loaded YAML config sets ``model.hidden_size`` (also under ``init_args``)."""
    for key in dotted.split("."):
        if isinstance(config, dict) and key not in config and isinstance(config.get("init_args"), dict):
            config = config["init_args"]
        if not isinstance(config, dict) or key not in config:
            return False
        config = config[key]
    return True


def check_config_files(given: list[str]) -> None:
    """YAML errors from jsonargparse name no file and it keeps a repeated key's last value; and
    a flag placed before ``--config`` is silently overridden by it (later arguments win)."""
    for i, arg in enumerate(given):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
            given[i + 1] if arg in ("--config", "-c") and i + 1 < len(given) else None)
        if not path or not Path(path).is_file():
            continue
        try:
            loaded = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            twice = "appears twice" in str(getattr(error, "problem", ""))
            raise UserError(f"{path}: not valid YAML{line} ({getattr(error, 'problem', error)}); fix: "
                            + ("keep one of them" if twice else
                               "correct the file (python -m project fit --print_config shows a valid one)")) from None
        if loaded is None:  # jsonargparse: "Unexpected config:" and nothing more
            raise UserError(f"--config {path} is empty; fix: put settings in it (python -m project fit "
                            "--print_config shows them all), or leave it out")
        if not isinstance(loaded, dict):
            raise UserError(f"--config {path} holds a {type(loaded).__name__}, not a mapping of settings; fix: "
                            "e.g. model: {hidden_size: 256} (python -m project fit --print_config shows them all)")
        for section in ("model", "data", "trainer"):  # a list there was printed back and trained on defaults
            if section in loaded and not isinstance(loaded[section], dict | None):
                raise UserError(f"--config {path}: {section} holds a {type(loaded[section]).__name__}, not a mapping "
                                f"of settings; fix: e.g. {section}: {{...}} (--print_config shows its settings)")
        for flag in given[:i]:
            name = flag.split("=", 1)[0]
            if name.startswith("--") and name != "--config" and _sets(loaded, name[2:]):
                raise UserError(f"{name} comes before --config {path}, which sets it again and wins (later "
                                f"arguments override earlier ones); fix: put {name} after --config")
