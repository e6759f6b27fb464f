"""A word-level Hugging Face ``tokenizers`` tokenizer, trained on the training split only so that
no validation or test word leaks into the vocabulary."""

from collections.abc import Iterator

from datasets import Dataset
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1: the trainer adds special tokens first


def _text_batches(dataset: Dataset, batch_size: int = 1000) -> Iterator[list[str]]:
    # Batches straight from Arrow: the Rust trainer never needs all texts as one Python list.
    for start in range(0, len(dataset), batch_size):
        yield dataset[start : start + batch_size]["text"]


def train_tokenizer(
    train: Dataset, vocab_size: int, min_frequency: int, lowercase: bool, max_length: int
) -> Tokenizer:
    """Word level, split on whitespace and punctuation, rare words mapped to ``[UNK]``."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+|[^\w\s]+
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK]
    )
    tokenizer.train_from_iterator(_text_batches(train), trainer=trainer, length=len(train))
    tokenizer.enable_truncation(max_length)
    return tokenizer
