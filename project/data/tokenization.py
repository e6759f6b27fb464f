"""Hugging Face ``tokenizers``: a word, BPE, WordPiece or Unigram tokenizer trained on the
training split only (no validation or test word leaks into the vocabulary), or a ready
``tokenizer.json``. Truncation to ``max_length`` is part of the tokenizer."""

from pathlib import Path

import lightning_utilities.core.rank_zero as rank_zero
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from lightning.pytorch.utilities import rank_zero_only
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from project.data.padding import PAD_NAMES, PAIR_JOIN, SEP, unk_id
from project.errors import UserError

PAD, UNK = PAD_NAMES[0], "[UNK]"  # ids 0 and 1 (and [SEP] 2): the trainers add special tokens first
KINDS = ("word", "bpe", "wordpiece", "unigram")
UNK_WARNING = 0.2  # a larger share of [UNK] validation tokens is worth a warning


def _untrained(kind: str, vocab_size: int, min_frequency: int, pairs: bool) -> tuple[Tokenizer, trainers.Trainer]:
    special = {"special_tokens": [PAD, UNK, *([SEP] if pairs else [])], "vocab_size": vocab_size}
    if kind == "word":
        return Tokenizer(models.WordLevel(unk_token=UNK)), trainers.WordLevelTrainer(
            min_frequency=min_frequency, **special
        )
    if kind == "bpe":
        return Tokenizer(models.BPE(unk_token=UNK)), trainers.BpeTrainer(
            min_frequency=min_frequency, **special
        )
    if kind == "wordpiece":
        return Tokenizer(models.WordPiece(unk_token=UNK)), trainers.WordPieceTrainer(
            min_frequency=min_frequency, **special
        )
    # Unigram keeps the pieces that best explain the text; it has no frequency floor.
    return Tokenizer(models.Unigram()), trainers.UnigramTrainer(unk_token=UNK, **special)


def train_tokenizer(
    train: Dataset, kind: str, vocab_size: int, min_frequency: int, lowercase: bool, pairs: bool = False
) -> Tokenizer:
    """Split on whitespace and punctuation, then learn ``kind``'s vocabulary from train.
    ``pairs``: the texts are pairs written ``first [SEP] second``; ``[SEP]`` is a special token
    (id 2), matched before the normalizer and the pre-tokenizer see the text, never learnt as words."""
    tokenizer, trainer = _untrained(kind, vocab_size, min_frequency, pairs)
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+|[^\w\s]+
    # Batches straight from Arrow: the Rust trainer never needs all texts as one Python list.
    batches = (batch["text"] for batch in train.iter(batch_size=1000))
    tokenizer.train_from_iterator(batches, trainer=trainer, length=len(train))
    return tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """A ``tokenizer.json`` made elsewhere (``tokenizers`` or a ``transformers`` fast tokenizer)."""
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # the Rust side reports a parse error with no file name
        raise UserError(f"{path}: not a tokenizer.json ({error}); fix: pass a file saved by tokenizers") from None
    tokenizer.no_padding()  # batches are padded by the DataModule, to each batch's longest text
    return tokenizer


def make_tokenizer(
    train: Dataset, tokenizer: str, vocab_size: int, min_frequency: int, lowercase: bool,
    max_length: int, pairs: bool = False,
) -> Tokenizer:
    """``tokenizer`` is a kind to train, or the path of a ``tokenizer.json``. ``pairs``: see
    ``pair_tokenizer``."""
    if tokenizer in KINDS:
        made = train_tokenizer(train, tokenizer, vocab_size, min_frequency, lowercase, pairs)
    elif Path(tokenizer).is_file():
        made = load_tokenizer(tokenizer)
    else:
        raise UserError(
            f"tokenizer '{tokenizer}' is neither a kind ({', '.join(KINDS)}) nor an existing "
            f"tokenizer.json; fix: set --data.tokenizer to one of them"
        )
    made.enable_truncation(max_length)  # a pair's: longest_first, max_length tokens for both texts
    return pair_tokenizer(made) if pairs else made


def pair_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """A tokenizer that reads a pair ``(first, second)`` as ``first [SEP] second`` (tokenizers'
    TemplateProcessing; ``[SEP]`` added to a ready tokenizer that lacks it), truncated at the
    longer text first, so that neither is cut away for the other."""
    if tokenizer.token_to_id(SEP) is None:
        tokenizer.add_special_tokens([SEP])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A", pair=f"$A {SEP} $B", special_tokens=[(SEP, tokenizer.token_to_id(SEP))])
    return tokenizer


def as_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Pair texts as the data holds them (``first [SEP] second``, sources.py) back as pairs."""
    return [tuple(text.split(PAIR_JOIN, 1)) for text in texts]


def unk_share(tokenizer: Tokenizer, input_ids: pa.ChunkedArray) -> float:
    """Share of [UNK] among the token ids of a split's Arrow column (no Python lists)."""
    unk = unk_id(tokenizer)
    ids = pc.list_flatten(input_ids)
    if unk is None or len(ids) == 0:
        return 0.0
    return pc.sum(pc.equal(ids, unk)).as_py() / len(ids)


@rank_zero_only
def warn_unknown(tokenizer: Tokenizer, input_ids: pa.ChunkedArray, kind: str) -> None:
    """Text the tokenizer cannot split into known tokens (Chinese has no spaces between words;
    emoji) trains on [UNK]s alone: say so, once, on every run (cache hits too). One plain line,
    through the logger rank_zero_info uses (a Python warning would add a source line, and repeat
    per rank)."""
    share = unk_share(tokenizer, input_ids)
    if share > UNK_WARNING:
        hint = ("--data.tokenizer bpe splits such text into pieces seen in train" if kind != "bpe"
                else "give more training text like the validation text")
        rank_zero.log.warning(f"Warning: {share:.0%} of the validation tokens are [UNK] (text without spaces "
                              f"between words, such as Chinese, or emoji?); try: {hint}")
