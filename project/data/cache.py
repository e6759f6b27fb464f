"""The on-disk cache of prepared data: tokenized splits (Arrow, memory-mapped on load), the
tokenizer and the label names, under a key made of the source's fingerprint and every setting
that changes the result. A second run with equal settings loads it and tokenizes nothing; any
changed setting or source file gives a new key.

Writes are atomic (atomic.py): everything goes to a partial folder beside the final one, which is
renamed into place only when complete. A run that dies, or bad data found halfway, leaves no entry.
Under DDP only local rank 0 of each node builds (tokenizer training included); the other
ranks wait for the entry and load it. Two processes building one entry at once (two nodes on
one file system) both succeed and one rename wins.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import tokenizers
from datasets import DatasetDict
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer

from project.atomic import Taken, atomic_write, check_writable
from project.errors import UserError

FORMAT = 2  # bump when what is stored, or how it is made, changes


@dataclass
class Prepared:
    splits: DatasetDict  # columns text, label (a ClassLabel), input_ids, length, row
    tokenizer: Tokenizer

    @property
    def label_names(self) -> list[str]:
        feature = self.splits["train"].features["label"]
        return getattr(feature, "feature", feature).names  # multi-label: a list of ClassLabel


def file_stamps(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """Path, size and modification time of each file: a changed file changes the key without
    reading it (the Hugging Face cache fingerprints local files the same way)."""
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return sorted(stamps)


def cache_key(settings: dict) -> str:
    material = {"format": FORMAT, "tokenizers": tokenizers.__version__, **settings}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


def _load(folder: Path) -> Prepared:
    return Prepared(
        DatasetDict.load_from_disk(str(folder / "splits")),
        Tokenizer.from_file(str(folder / "tokenizer.json")),
    )


def load_or_build(
    root: Path, key: str, build: Callable[[], Prepared], wait: bool = False, timeout: float = 3600
) -> tuple[Prepared, bool]:
    """``(prepared, hit)``: the entry ``root/key`` if complete, else built, stored, loaded.
    ``wait``: another process (DDP local rank 0) builds it; wait for it instead of building."""
    final = root / key
    deadline = time.monotonic() + timeout
    while wait and not (final / "meta.json").is_file():
        if time.monotonic() > deadline:
            raise UserError(
                f"waited {timeout:.0f} s for local rank 0 to build the tokenized data in {final}; "
                f"fix: read rank 0's error, or prepare the data once with one process first"
            )
        time.sleep(0.5)
    if (final / "meta.json").is_file():
        return _load(final), True
    # Before tokenizing (minutes on large data), not when its result is written; a read-only
    # cache that holds the entry is read above.
    check_writable(root, "--data.cache_dir DIR, a folder you can write in")
    root.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(final, replace=False, fix="point --data.cache_dir at another disk") as partial:
            prepared = build()
            prepared.splits.save_to_disk(str(partial / "splits"))
            prepared.tokenizer.save(str(partial / "tokenizer.json"))
            # meta.json last: its presence marks a complete entry even on file systems without
            # atomic directory renames.
            (partial / "meta.json").write_text(json.dumps({"format": FORMAT}))
    except Taken:  # another process renamed its equal entry first
        if not (final / "meta.json").is_file():
            raise
    return _load(final), False


def prepare(settings: dict, cache_dir: str | None, build: Callable[[], Prepared]) -> tuple[Prepared, bool]:
    """``(prepared, hit)`` for ``settings`` under ``cache_dir`` (None: ``project`` under the
    Hugging Face datasets cache)."""
    root = Path(cache_dir or os.path.join(datasets.config.HF_DATASETS_CACHE, "project"))
    # LOCAL_RANK is set by Lightning's DDP launcher and by torchrun before any process group
    # exists: one builder per node (nodes may not share a file system), the others wait.
    others_build = int(os.environ.get("LOCAL_RANK", "0")) != 0
    prepared, hit = load_or_build(root, cache_key(settings), build, wait=others_build)
    rank_zero_info(f"Tokenized data {'loaded from' if hit else 'cached in'} {root}.")
    return prepared, hit
