"""Tiny generated data so every test runs in seconds on 2 cores, through the real tokenizers,
datasets and Lightning code paths."""

import contextlib
import csv
import io
import os
import random
from pathlib import Path

import pytest
from hypothesis import Phase, settings

WORDS = {
    "neg": ["awful", "bad", "dull", "boring", "poor"],
    "neu": ["table", "street", "window", "paper", "train"],
    "pos": ["great", "good", "superb", "lovely", "fine"],
}
FILLER = ["the", "a", "and", "of", "it", "is", "was", "this", "film", "."]


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = sorted(WORDS)[i % len(WORDS)]
        words = [rng.choice(WORDS[label] + FILLER) for _ in range(rng.randint(3, 30))]
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


@pytest.fixture
def tiny_csv(tmp_path: Path) -> dict[str, str]:
    """train / validation / test csv files with string labels; test alone has 'zebraword'."""
    test_rows = make_rows(15, seed=3)
    for row in test_rows[:3]:
        row["sentence"] += " zebraword"
    files = {
        "train": write_rows(tmp_path / "train.csv", make_rows(60, seed=1)),
        "validation": write_rows(tmp_path / "validation.csv", make_rows(15, seed=2)),
        "test": write_rows(tmp_path / "test.csv", test_rows),
    }
    return files


@pytest.fixture(autouse=True, scope="session")
def fresh_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every session starts with empty Hugging Face and tokenization caches (as on a fresh
    clone), and never touches the user's own."""
    import datasets

    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets")


def write_rows(path: Path, rows: list[dict]) -> str:
    """Rows in the file kind its extension names: csv and tsv by hand (tsv unquoted, as GLUE),
    json lines and parquet through ``datasets``' own writers."""
    if path.suffix == ".tsv":
        lines = ["\t".join(rows[0])] + ["\t".join(str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        from datasets import Dataset

        dataset = Dataset.from_list(rows)
        if path.suffix == ".parquet":
            dataset.to_parquet(str(path))
        else:
            dataset.to_json(str(path), lines=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """One finished 2-epoch ``fit`` on tiny data with every default (progress bar, summary,
    logger, dashboard, checkpoints); returns the CLI object. The training files are deleted
    afterwards: whatever uses the run must not need them."""
    from project.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    files = {split: write_rows(root / f"{split}.csv", make_rows(n, seed))
             for split, n, seed in (("train", 60, 1), ("validation", 15, 2), ("test", 15, 3))}
    cli = main([
        "fit", f"--data.data_files={files}", "--data.text_column=sentence", "--data.min_frequency=1",
        "--data.batch_size=16", "--model.embedding_dim=8", "--model.hidden_size=8",
        "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1", f"--trainer.default_root_dir={root}",
    ])
    for file in files.values():
        Path(file).unlink()
    return cli


# For a long hunt: report each failure as found, without minimising it (which can take longer
# than the hunt): pytest --hypothesis-profile=hunt
settings.register_profile("hunt", phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True)


def examples(small: int) -> int:
    """Hypothesis examples per generative test: ``small`` keeps CI fast; the environment
    variable PROJECT_EXAMPLES raises it for a long hunt (``PROJECT_EXAMPLES=500 pytest -k generated``)."""
    return int(os.environ.get("PROJECT_EXAMPLES", small))


def run_cli(args: list[str]) -> tuple[int, str]:
    """``python -m project ARGS`` in this process: its exit code and what it printed on stderr.
    An exception that escapes (a traceback for a user) is not caught: the test fails on it."""
    from project.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue()


def assert_contract(code: int, err: str, root: Path) -> bool:
    """The contract of every command: it succeeds (True), or it stops with exactly one
    ``error: ... fix: ...`` line, exit code 2, no traceback and no half-written file under
    ``root`` (False)."""
    assert "Traceback" not in err, err[-3000:]
    if code == 0:
        return True
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-3000:]
    assert len(errors) == 1 and "fix:" in errors[0], err[-3000:]
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left"
    return False
