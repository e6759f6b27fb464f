"""The README and docs/*.md stay true: every ``python -m project ...`` command shown in a fenced
code block names a subcommand that exists and flags that subcommand takes, every config under
configs/ that such a command loads parses, every link points at a file (and heading) that
exists, the Python examples import names that exist, the README's Layout table lists every file
of project/, and the README's test command is the one .ci/run runs. No training: --help and
--print_config only, each computed once."""

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
PLACEHOLDER = re.compile(r"<[^<>()\s][^<>]*>")  # <checkpoint>, not <(zcat x) nor "< in.txt >"
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")


def _commands() -> list[tuple[str, list[str]]]:
    """(where, arguments after ``-m project``) for every command in a shell block of the pages."""
    found = []
    for page in PAGES:
        for lang, block in FENCE.findall(page.read_text()):
            if lang.strip() not in SHELL_BLOCKS:
                continue
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # join \ continuations
                if "-m project" not in line:
                    continue
                lexer = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", line), posix=True, punctuation_chars=True)
                lexer.whitespace_split = True  # comments (#) are dropped by shlex
                tokens = list(lexer)
                start = next(i + 2 for i in range(len(tokens) - 1) if tokens[i:i + 2] == ["-m", "project"])
                args = []
                for token in tokens[start:]:
                    if set(token) <= set("|&;<>()"):  # a pipe, redirection or the next command
                        break
                    args.append(token)
                found.append((f"{page.relative_to(ROOT)}: {line.strip()}", args))
    return found


def _subcommand(args: list[str]) -> str | None:
    return args[0] if args and not args[0].startswith("-") else None


COMMANDS = _commands()
# What can be checked: a command whose subcommand is a placeholder (``<subcommand> --help``) names none.
CHECKABLE = [(where, args) for where, args in COMMANDS if _subcommand(args) != "PLACEHOLDER"]
HELP: dict[str | None, tuple[int, str]] = {}  # subcommand -> (exit code, help text), computed once
CONFIGS: dict[str, tuple[int, str]] = {}  # config file -> (exit code, output of --print_config)


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """run_cli, with what the command printed on stdout (--help, --print_config) before its stderr."""
    capsys.readouterr()
    code, err = run_cli(args)
    return code, capsys.readouterr().out + err


def _help(sub: str | None, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    if sub not in HELP:
        HELP[sub] = _run([sub, "--help"] if sub else ["--help"], capsys)
    return HELP[sub]


def _flags(help_text: str) -> set[str]:
    """The flags in a --help: its usage lines and its option lines (indented 1-4 spaces), not
    the wrapped descriptions, which may mention flags of other subcommands."""
    lines = [line for line in help_text.splitlines()
             if line.startswith("usage:") or line.lstrip().startswith("[") or re.match(r" {1,4}-", line)]
    return set(re.findall(r"(?<![\w.-])--[A-Za-z0-9_][\w.]*", "\n".join(lines)))


def test_the_pages_show_commands() -> None:
    # The extraction itself can fail: the README's tour and the docs must yield commands.
    where = {w.split(":")[0] for w, _ in COMMANDS}
    assert "README.md" in where and len(COMMANDS) >= 20, sorted(where)


@pytest.mark.slow
@pytest.mark.parametrize("where, args", CHECKABLE, ids=[w for w, _ in CHECKABLE])
def test_command_is_runnable(where: str, args: list[str], capsys: pytest.CaptureFixture) -> None:
    sub = _subcommand(args)
    code, text = _help(sub, capsys)
    assert code == 0, f"python -m project {sub or ''} --help exits {code}: {text[-500:]}"
    flags = _flags(text)
    if sub == "compare":  # compare passes every fit flag through to its runs
        flags |= _flags(_help("fit", capsys)[1])
    if sub == "lr_find" and args[1:2] == ["pretrain"]:  # lr_find pretrain: pretrain's flags
        flags |= _flags(_help("pretrain", capsys)[1])
    assert len(flags) >= 2, text[-500:]  # the help was read: at least --help and one more
    unknown = [a for a in args if a.startswith("--") and re.match(r"--[\w.]+", a)[0] not in flags]
    assert not unknown, f"{where}: {unknown} not in python -m project {sub or ''} --help"
    for flag, value in zip(args, args[1:]):
        if flag not in ("-c", "--config") or value == "PLACEHOLDER" or not value.startswith("configs/"):
            continue
        assert (ROOT / value).is_file(), f"{where}: {value} does not exist"
        if value not in CONFIGS:
            CONFIGS[value] = _run(["fit", "--config", str(ROOT / value), "--print_config"], capsys)
        code, text = CONFIGS[value]
        assert code == 0, f"{where}: {value} does not parse: {text[-500:]}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(page: Path) -> str:
    """A page without its code (links inside code are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))


LINKS = [(page, target) for page in PAGES
         for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", _prose(page))
         if not re.match(r"[a-z]+:", target)]


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.split("#")[0]).resolve() for page, t in LINKS if page.name == "README.md"}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link to: {orphans}"


@pytest.mark.parametrize("page, target", LINKS, ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS])
def test_link_points_at_something_that_exists(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.relative_to(ROOT)} links to {target}: no such file"
    if anchor:
        headings = re.findall(r"^#+ (.+)$", FENCE.sub("", file.read_text()), re.M)
        assert anchor in {_slug(h) for h in headings}, f"{page.relative_to(ROOT)} links to {target}: no such heading"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Two commands"):]
    section = section[:section.index("\n## ")]
    tests = [block for _, block in FENCE.findall(section) if "pytest" in block]
    assert len(tests) == 1, section
    readme_steps = [step.strip() for step in tests[0].strip().split("&&")]
    ci_steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    ci_steps = ci_steps[:ci_steps.index("python -m pytest -q") + 1]  # the main run; .ci/lowest follows it
    assert readme_steps[-1] == ci_steps[-1] == "python -m pytest -q"
    pins = [re.findall(r"torch==[\w.+]+", " ".join(steps)) for steps in (readme_steps, ci_steps)]
    assert pins[0] == pins[1] and pins[0], pins
    assert all(any('-e ".[dev]"' in step for step in steps) for steps in (readme_steps, ci_steps))


def test_the_tested_ranges_are_pyprojects() -> None:
    """docs/dependencies.md's table of tested ranges names every requirement of pyproject.toml
    with pyproject's own specifier: one list of ranges, not two."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name = re.match(r"[\w.-]+", requirement).group(0)
        wanted[name] = re.sub(r"^\[[\w,]+\]", "", requirement[len(name):]).strip()
    page = (ROOT / "docs" / "dependencies.md").read_text()
    section = page[page.index("## Tested ranges"):]
    rows = dict(re.findall(r"^\| `([\w.-]+)` \| `([^`]+)` \|", section, re.M))
    assert rows == wanted


def test_the_layout_table_has_a_row_per_folder_naming_its_files() -> None:
    """One row per package of project/ (and one for project/ itself), naming every module in it;
    each package's docstring names its modules too."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):]
    rows = dict(re.findall(r"^\| `(project/(?:\w+/)?)` \| (.*) \|$", table, re.M))
    packages = sorted(p.parent for p in (ROOT / "project").glob("*/__init__.py"))
    assert set(rows) == {"project/", *(f"project/{p.name}/" for p in packages)}, sorted(rows)
    for folder in [ROOT / "project", *packages]:
        row = rows[str(folder.relative_to(ROOT)) + "/"]
        modules = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        assert all(f"`{m}`" in row for m in modules), (folder.name, [m for m in modules if f"`{m}`" not in row])
        if folder.name != "project":
            doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
            assert all(f"``{m.removesuffix('.py')}``" in doc for m in modules), (folder.name, modules)


LAYERS = ("commands", "serving", "inference", "training", "data", "model", "")  # top to bottom; "": project/


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_each_package_imports_only_packages_below_it() -> None:
    """The layers of project/__init__.py's docstring, and its rules: data and model do not import
    each other, inference does not import training, nothing imports commands but __main__."""
    wrong = []
    for path in (ROOT / "project").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module in ("project", "project.__main__"):
            continue
        here = _package(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("project"):
                continue
            targets = [f"{node.module}.{a.name}" for a in node.names] if node.module == "project" else [node.module]
            for target in targets:
                there = _package(target)
                allowed = (there == here or LAYERS.index(there) > LAYERS.index(here)) and {here, there} != {"data", "model"} \
                    and (here, there) != ("inference", "training")
                if not allowed:
                    wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_python_examples_import_names_that_exist() -> None:
    imports = [(module, name.strip()) for page in PAGES for lang, block in FENCE.findall(page.read_text())
               if lang.strip() == "python"
               for module, names in re.findall(r"^from (project[\w.]*) import ([\w, ]+)$", block, re.M)
               for name in names.split(",")]
    assert ("project", "Predictor") in imports  # the README's Python API example
    missing = [f"{m}.{n}" for m, n in imports if not hasattr(importlib.import_module(m), n)]
    assert not missing, missing
