"""Token ids as rectangular arrays: each batch padded to its own longest text, prediction's
batches of texts sorted by length, and the ids of the padding and unknown tokens. numpy and Arrow only, no torch: an exported model labels
text on ONNX Runtime with these steps (``serve --model`` starts without importing PyTorch);
batching.py wraps them in tensors for training."""

import json

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

# What tokenizers call their padding token: ours first (tokenization.py trains it as id 0).
PAD_NAMES = ("[PAD]", "<pad>", "[pad]", "<PAD>")
# What stands between the two texts of a pair: a token of its own, which tokenization.py adds to
# the vocabulary of pair data and never splits; the data holds a pair as one text joined by
# PAIR_JOIN (shown so in reports, read by a language model so).
SEP = "[SEP]"
PAIR_JOIN = f" {SEP} "


def pad_id(tokenizer: Tokenizer) -> int:
    """The id batches are padded with. Any id would do, since the encoder and the pooling never
    read padded positions; a named padding token just keeps the batches readable."""
    for token in PAD_NAMES:
        if (found := tokenizer.token_to_id(token)) is not None:
            return found
    return 0


def sep_id(tokenizer: Tokenizer) -> int | None:
    """The id of the pair separator ``[SEP]``, or None for a tokenizer without one (single texts)."""
    return tokenizer.token_to_id(SEP)


def unk_id(tokenizer: Tokenizer) -> int | None:
    """The id of the unknown-word token ([UNK] in ours, <unk> in many ready ones), or None for a
    tokenizer that has none (a byte-level BPE reads every text)."""
    token = getattr(tokenizer.model, "unk_token", None)
    if token is not None:
        return tokenizer.token_to_id(token)
    return json.loads(tokenizer.to_str())["model"].get("unk_id")  # Unigram keeps an id, not a token


def pad_ids(ids: pa.ListArray | pa.ChunkedArray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch's token ids padded to its own longest text, and each text's length (int64), in a
    few vectorised numpy steps on the list offsets and values (the datasets torch formatter makes
    one tensor per row: 5x slower)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.chunk(0) if ids.num_chunks == 1 else ids.combine_chunks()
    offsets = ids.offsets.to_numpy()  # this slice's own; ``values`` is the whole buffer
    lengths = np.diff(offsets).astype(np.int64)
    padded = np.full((len(lengths), lengths.max(initial=1)), pad_id, dtype=np.int64)
    padded[np.arange(padded.shape[1]) < lengths[:, None]] = ids.values.to_numpy()[offsets[0] : offsets[-1]]
    return padded, lengths


def length_sorted_batches(ids: pa.ListArray, batch_size: int) -> tuple[np.ndarray, list[pa.Table]]:
    """Prediction's batches: the rows with tokens, sorted by length (the caller restores the
    input order), as zero-copy slices of one sorted table, each padded only to its own longest."""
    lengths = ids.value_lengths().to_numpy()
    kept = np.flatnonzero(lengths > 0)  # the rest: blank, or no tokens at all
    order = kept[np.argsort(lengths[kept], kind="stable")]
    table = pa.table({"input_ids": ids.take(order)})
    return order, [table.slice(start, batch_size) for start in range(0, len(order), batch_size)]
