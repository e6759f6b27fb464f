"""A word-level Hugging Face ``tokenizers`` tokenizer, trained on the training split only so that
no validation or test word leaks into the vocabulary."""

from datasets import Dataset
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1: the trainer adds special tokens first


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
    # Batches straight from Arrow: the Rust trainer never needs all texts as one Python list.
    batches = (batch["text"] for batch in train.iter(batch_size=1000))
    tokenizer.train_from_iterator(batches, trainer=trainer, length=len(train))
    tokenizer.enable_truncation(max_length)
    return tokenizer
