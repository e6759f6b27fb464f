"""Generated flag values for ``fit``: Hypothesis sets one to three model, data, trainer and
callback flags to zero, negative, huge, fractional, non-finite, empty or wrongly typed values.
The contract for every case: it trains, or it stops with exactly one ``error: ... fix: ...``
line and exit code 2, no traceback and no partial file."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_contract, examples, run_cli, tiny_data

FLAGS = [
    "--model.embedding_dim", "--model.hidden_size", "--model.num_layers", "--model.bidirectional",
    "--model.embedding_dropout", "--model.word_dropout", "--model.layer_dropout", "--model.classifier_dropout",
    "--model.learning_rate", "--model.weight_decay", "--model.warmup", "--model.label_smoothing",
    "--model.class_weights", "--model.cell_type", "--model.pooling", "--model.lr_schedule", "--model.optimizer",
    "--data.batch_size", "--data.max_length", "--data.bucket_size", "--data.max_vocab_size", "--data.min_frequency",
    "--data.validation_size", "--data.train_fraction", "--data.max_chars", "--data.seed", "--data.num_workers",
    "--data.lowercase", "--data.tokenizer", "--trainer.max_epochs", "--trainer.max_steps",
    "--trainer.accumulate_grad_batches", "--trainer.gradient_clip_val", "--trainer.log_every_n_steps",
    "--trainer.check_val_every_n_epoch", "--trainer.val_check_interval", "--trainer.limit_train_batches",
    "--trainer.limit_val_batches", "--trainer.num_sanity_val_steps", "--trainer.precision",
    "--last_checkpoint.every_n_train_steps", "--validation_report.misclassified", "--throughput.warmup_steps",
    "--checkpoint.save_top_k", "--seed_everything", "--early_stopping.patience", "--early_stopping.min_delta",
]
VALUES = ["0", "-1", "-7", "1", "2", "3", "10000000000000", "1e30", "1e-30", "0.5", "1.5", "-0.5", "nan", "inf",
          "-inf", "abc", "", "true", "false", "null", "[1, 2]", "{a: 1}", "lstm", "bpe", "bf16-mixed"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("generated_cli")
    return ["fit", *tiny_data(tmp, train=24, validation=9, test=0, batch_size=8), "--trainer.max_steps=2",
            "--trainer.max_epochs=2", "--test_after_fit=false"]


@pytest.mark.slow
@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=st.dictionaries(st.sampled_from(FLAGS), st.sampled_from(VALUES), min_size=1, max_size=3))
def test_generated_flag_values_train_or_are_refused_in_one_line(flags: dict[str, str], data: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        code, err = run_cli([*data, f"--trainer.default_root_dir={root}",
                             *(f"{flag}={value}" for flag, value in flags.items())])
        assert_contract(code, err, root)
