"""Pretrained word vectors from a local text file, matched to the tokenizer's vocabulary.

Reads the three common text formats: GloVe (``word v1 ... vD`` per line), word2vec text and
fastText ``.vec`` (the same, after a ``count dim`` header line). The file is streamed line by
line and only rows of vocabulary words are kept, so a 2 GB file costs a read, not 2 GB of RAM.
"""

from pathlib import Path

import torch

from project.errors import UserError


def _rows(path: Path):
    """(line number, word, numbers as strings) for each vector line."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            for number, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec / fastText header: "count dim"
                if len(parts) > 1:
                    yield number, parts[0], parts[1:]
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 ({error.reason}); fix: re-save it as UTF-8") from None


def load_vectors(path: str, vocab: dict[str, int], dim: int) -> tuple[dict[int, torch.Tensor], int]:
    """Vectors for the vocabulary ids found in ``path``, and how many vocabulary words (special
    tokens aside) there are. A word missing in its own case is matched lower-cased (fastText is
    cased; a lower-casing tokenizer's vocabulary is not): an exact match wins over that."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: no such vectors file; fix: correct --model.pretrained_vectors")
    words = {w: i for w, i in vocab.items() if not (w.startswith("[") and w.endswith("]"))}
    found: dict[int, torch.Tensor] = {}
    exact: set[int] = set()
    for number, word, numbers in _rows(file):
        index = words.get(word)
        is_exact = index is not None
        if not is_exact:
            index = words.get(word.lower())
        keep = index is not None and index not in exact and (is_exact or index not in found)
        if (keep or number <= 2) and len(numbers) != dim:  # the first vector and every kept one
            raise UserError(
                f"{path} line {number}: a {len(numbers)}-dimensional vector, but "
                f"--model.embedding_dim is {dim}; fix: set --model.embedding_dim {len(numbers)}"
            )
        if not keep:
            continue
        try:
            found[index] = torch.tensor([float(x) for x in numbers])
        except ValueError:
            raise UserError(f"{path} line {number}: not numbers after the word; fix: repair the file") from None
        if is_exact:
            exact.add(index)
    return found, len(words)
