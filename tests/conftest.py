"""Fixtures: tiny generated data so every test runs in seconds on 2 cores, through the real
tokenizers, datasets and Lightning code paths; one finished tiny run; the fork server. The
helpers the test files import live in helpers.py (re-exported here for older imports)."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import Phase, settings

from tests.helpers import ForkServer, assert_contract, examples, make_rows, run_cli, write_rows, write_splits

# Test files that import these from conftest keep working; new code imports from tests.helpers.
__all__ = ["assert_contract", "examples", "make_rows", "run_cli", "write_rows"]


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test starts from the same random state (Python's, numpy's and torch's), whichever
    tests ran before it and whatever was imported first. Not Lightning's ``seed_everything``: it
    also sets PL_GLOBAL_SEED, which child processes would inherit."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def tiny_csv(tmp_path: Path) -> dict[str, str]:
    """train / validation / test csv files with string labels; test alone has 'zebraword'."""
    test_rows = make_rows(15, seed=3)
    for row in test_rows[:3]:
        row["sentence"] += " zebraword"
    return {**write_splits(tmp_path, test=0), "test": write_rows(tmp_path / "test.csv", test_rows)}


@pytest.fixture(autouse=True, scope="session")
def fresh_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every session starts with empty Hugging Face and tokenization caches (as on a fresh
    clone), and never touches the user's own."""
    import datasets

    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """One finished 2-epoch ``fit`` on tiny data with every default (progress bar, summary,
    logger, TensorBoard callbacks, metrics.json, checkpoints); returns the CLI object. The
    training files are deleted afterwards: whatever uses the run must not need them."""
    from project.commands.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    files = write_splits(root)
    cli = main([
        "fit", f"--data.data_files={files}", "--data.text_column=sentence", "--data.min_frequency=1",
        "--data.batch_size=16", "--model.embedding_dim=8", "--model.hidden_size=8",
        "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1", f"--trainer.default_root_dir={root}",
    ])
    for file in files.values():
        Path(file).unlink()
    return cli


@pytest.fixture(scope="session")
def fork_server(tmp_path_factory: pytest.TempPathFactory):
    """One fork server (tests/forkserver.py) for the session: ``python -m project`` commands as
    forked children, without paying the imports per command."""
    server = ForkServer(tmp_path_factory.mktemp("forks"))
    yield server
    server.close()


# For a long hunt: report each failure as found, without minimising it (which can take longer
# than the hunt): pytest --hypothesis-profile=hunt
settings.register_profile("hunt", phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True)
