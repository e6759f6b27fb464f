"""``python -m project predict --ckpt_path X``: label new text with a checkpoint alone (no config,
no data: the checkpoint carries the tokenizer, the label names and the model's settings).

Reads one text per line from a text file or stdin, or a text column of a csv / tsv / json /
jsonl / parquet file; writes one JSON line per input line, in input order:
``{"text", "label", "probabilities": {label: p}, "blank"}``. Blank lines are kept and flagged
(``"blank": true``, label and probabilities null; so is a text the tokenizer reads as no
tokens at all). The input streams through in chunks of ``CHUNK`` texts, so memory stays flat:
each chunk is tokenized, sorted by length and cut into batches (little padding), padded as in
training, run through Lightning's ``Trainer.predict`` and written before the next is read. An
output file is written beside its name and renamed into place at the end; it never replaces
the input or the checkpoint, nor any other existing file without ``--overwrite``.
"""

import difflib
import errno
import gc
import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from json.encoder import encode_basestring as quote
from pathlib import Path
from typing import BinaryIO, NoReturn, TextIO

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from jsonargparse import ActionYesNo, ArgumentParser
from lightning.fabric.utilities.exceptions import MisconfigurationException
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from project import files
from project.batching import pad_batch
from project.checkpoints import read_checkpoint
from project.checks import DataError
from project.data import TextDataModule
from project.model import TextClassifier
from project.tokenization import pad_id

# Texts per chunk. On 1M short lines the whole-input version peaked at 2.4 GB (mostly the
# tokenizer's Encoding objects); a chunk of this size costs tens of MB, and the ~7 ms that each
# Trainer.predict call adds is lost in the seconds a chunk takes.
CHUNK = 65_536
# Texts per tokenizer call: the Encoding objects it returns weigh ~2 KB each (130 MB for a whole
# chunk); ids are taken from each call's before the next, so they are freed as it goes.
ENCODE = 8_192
BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; it is not text
# Writing errors worth a line of their own; any other OSError is a bug to see in full.
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


def load_checkpoint(path: str) -> tuple[TextClassifier, Tokenizer]:
    """The model in eval mode and its tokenizer, from one (memory-mapped) read of the file.

    The model is built from its saved arguments rather than by ``load_from_checkpoint``, which
    reads the file again and rebuilds the model through the CLI's jsonargparse instantiator:
    0.1 s, a fifteenth of labelling 18k sentences."""
    saved = read_checkpoint(path, TextDataModule.__qualname__)
    model = TextClassifier(**{k: v for k, v in saved["hyper_parameters"].items() if not k.startswith("_")})
    model.load_state_dict(saved["state_dict"])
    return model.eval(), Tokenizer.from_str(saved[TextDataModule.__qualname__]["tokenizer"])


def length_sorted_batches(ids: pa.ListArray, batch_size: int) -> tuple[np.ndarray, list[pa.Table]]:
    """The rows with tokens, sorted by length (the input order is restored afterwards), and
    their batches: zero-copy slices of one sorted table, padded only to their own longest."""
    lengths = ids.value_lengths().to_numpy()
    kept = np.flatnonzero(lengths > 0)  # the rest: blank, or no tokens at all
    order = kept[np.argsort(lengths[kept], kind="stable")]
    table = pa.table({"input_ids": ids.take(order)})
    return order, [table.slice(start, batch_size) for start in range(0, len(order), batch_size)]


def _text_chunks(stream: BinaryIO, name: str, size: int) -> Iterator[list[str]]:
    """One text per line, ``size`` lines at a time; a final newline ends the last line rather
    than adding a blank one, a CR before it (Windows) and a BOM at the start are dropped."""
    offset = lines_before = 0
    while raw_lines := list(islice(stream, size)):
        raw = b"".join(raw_lines)
        start = len(BOM) if offset == 0 and raw.startswith(BOM) else 0
        try:
            text = raw[start:].decode("utf-8")
        except UnicodeDecodeError as error:  # offset and line in the whole input, as an editor counts
            at = start + error.start
            line = lines_before + raw.count(b"\n", 0, at) + 1
            raise DataError(
                f"{name}: not UTF-8 (byte 0x{raw[at]:02x} at offset {offset + at}, line {line}); "
                f"fix: re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
            ) from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if lines:  # none in a file of a BOM alone
            yield [line.removesuffix("\r") for line in lines]
        offset, lines_before = offset + len(raw), lines_before + len(raw_lines)


def _file_chunks(path: str, size: int) -> Iterator[list[str]]:
    with open(path, "rb") as stream:  # opened at the first chunk, closed after the last
        yield from _text_chunks(stream, path, size)


def _table_chunks(path: Path, text_column: str, size: int) -> Iterator[list[str]]:
    dataset, name, _ = files.load_file(path, "predict")  # read now: its errors come before any output
    if text_column not in dataset.column_names:
        raise DataError(f"{name} has no column '{text_column}' (it has: {', '.join(dataset.column_names)}); "
                        f"fix: set --text_column")
    column = dataset.data.column(text_column)  # memory-mapped Arrow: one chunk in Python at a time
    return (["" if t is None else str(t) for t in column.slice(start, size).to_pylist()]
            for start in range(0, len(column), size))


def read_chunks(input: str, text_column: str, size: int = CHUNK) -> Iterator[list[str]]:
    """The input's texts, ``size`` at a time, in order."""
    if input == "-":
        return _text_chunks(sys.stdin.buffer, "stdin", size)
    if Path(input).suffix.lower() in files.FILE_KINDS:
        return _table_chunks(Path(input), text_column, size)
    return _file_chunks(input, size)


def _exists_error(output: str) -> DataError:
    return DataError(f"--output {output} already exists; "
                     f"fix: pass --overwrite to replace it, or choose another --output")


def check_arguments(ckpt_path: str, input: str, output: str, batch_size: int, overwrite: bool) -> None:
    """Refuse what cannot work before anything is loaded, and every output that would replace a
    file that predict did not write: the input and the checkpoint never, even with --overwrite."""
    if batch_size < 1:
        raise DataError(f"--batch_size is {batch_size}; fix: 1 or more")
    if input != "-" and Path(input).is_dir():
        raise DataError(f"--input {input} is a folder; fix: pass a file inside it, or - for stdin")
    if input != "-" and not Path(input).exists():  # a pipe is fine: --input <(zcat texts.gz)
        raise DataError(f"{input}: no such file; fix: pass an existing file to --input, or - for stdin")
    if output == "-":
        return
    target = Path(output)
    if output.endswith("/") or target.is_dir():
        raise DataError(f"--output {output} is a folder; fix: name a file, e.g. {target / 'labels.jsonl'}")
    if not target.parent.is_dir():
        raise DataError(f"{output}: no folder {target.parent}; fix: create it, or pass - for stdout")
    for given, what in ((input, "the input (--input)"), (ckpt_path, "the checkpoint (--ckpt_path)")):
        # Same inode: ./x, dir/../x, a symlink or a hard link to x all count as x.
        if given != "-" and os.path.exists(output) and os.path.exists(given) and os.path.samefile(output, given):
            raise DataError(f"--output {output} is {what}, which predict never replaces; "
                            f"fix: write the labels to another file")
    if target.exists() and not target.is_file():  # a device or a pipe: renaming onto it would replace it
        raise DataError(f"--output {output} is not a regular file; fix: pass - and redirect stdout")
    if os.path.lexists(target) and not overwrite:
        raise _exists_error(output)


@contextmanager
def open_output(output: str, overwrite: bool) -> Iterator[TextIO]:
    """stdout, or a new file beside ``output`` renamed onto it when the body ends (a reader never
    sees half a file) and removed if it fails."""
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(output)
    partial_file = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        f = partial_file.open("x", encoding="utf-8")  # "x": a file of ours, never someone else's
    except OSError as error:
        raise DataError(f"cannot write in {target.parent} ({error.strerror}); fix: choose another --output") from None
    try:
        with f:
            yield f
        if overwrite:
            os.replace(partial_file, target)
            return
        try:  # a hard link fails if the name was taken while predict ran: nothing is replaced
            os.link(partial_file, target)
        except FileExistsError:
            raise _exists_error(output) from None
        except OSError:  # a file system without hard links
            if os.path.lexists(target):
                raise _exists_error(output) from None
            os.replace(partial_file, target)
        partial_file.unlink(missing_ok=True)
    except BaseException as error:
        partial_file.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in FULL:
            raise DataError(f"cannot write {output} ({error.strerror}); "
                            f"fix: free some space, or choose another --output") from None
        raise


def jsonl_lines(names: list[str]):
    """The writer of one chunk's lines: one str.format per line from a template made once, around
    json's own C string quoting (what json.dumps(ensure_ascii=False) calls): 3x faster than a
    json.dumps per dict."""
    quoted = [quote(name) for name in names]
    shares = ", ".join(f"{name.replace('{', '{{').replace('}', '}}')}: {{:.6f}}" for name in quoted)
    labelled_line = ('{{"text": {}, "label": {}, "probabilities": {{' + shares + '}}, "blank": false}}\n').format
    blank_line = '{{"text": {}, "label": null, "probabilities": null, "blank": true}}\n'.format

    def lines(texts: list[str], labelled: list[bool], probabilities: torch.Tensor) -> list[str]:
        best = probabilities.argmax(-1).tolist()
        return [labelled_line(quote(text), quoted[b], *row) if keep else blank_line(quote(text))
                for text, keep, b, row in zip(texts, labelled, best, probabilities.tolist())]

    return lines


def write_jsonl(texts: list[str], labelled: list[bool], probabilities: torch.Tensor, names: list[str],
                output: str) -> None:
    """All lines at once (benchmarks/predict_throughput.py times the writing alone with it)."""
    with open_output(output, overwrite=True) as f:
        f.writelines(jsonl_lines(names)(texts, labelled, probabilities))


def label(trainer: L.Trainer, model: TextClassifier, tokenizer: Tokenizer, texts: list[str],
          batch_size: int) -> tuple[list[bool], torch.Tensor]:
    """Which texts got a label, and every text's probabilities (zeros for the rest)."""
    # Rust calls of ENCODE texts (offsets skipped: unused), straight into Arrow; blank lines
    # become empty rows. (A Dataset.map here added 10% to the whole predict time.)
    ids = []
    for start in range(0, len(texts), ENCODE):
        part = texts[start : start + ENCODE]
        ids += [e.ids if text.strip() else [] for text, e in zip(part, tokenizer.encode_batch_fast(part))]
    ids = pa.array(ids, pa.list_(pa.int32()))
    order, batches = length_sorted_batches(ids, min(batch_size, CHUNK))  # a huge size: one batch
    probabilities = torch.zeros(len(texts), len(model.hparams.label_names))
    labelled = np.zeros(len(texts), dtype=bool)
    if len(order):
        loader = DataLoader(batches, batch_size=None, collate_fn=partial(pad_batch, pad_id=pad_id(tokenizer)))
        probabilities[torch.from_numpy(order)] = torch.cat(trainer.predict(model, loader)).float().cpu()
        labelled[order] = True
    return labelled.tolist(), probabilities


def predict(
    ckpt_path: str,
    input: str = "-",
    output: str = "-",
    text_column: str = "text",
    batch_size: int = 256,
    accelerator: str = "auto",
    overwrite: bool = False,
) -> None:
    """Label each input text with a trained checkpoint; JSON lines out, in input order.

    Args:
        ckpt_path: A checkpoint written by ``python -m project fit``.
        input: A text file (one text per line), a csv / tsv / json / jsonl / parquet file with
            ``text_column``, or ``-`` for stdin.
        output: The JSONL file to write (renamed into place when complete), or ``-`` for stdout.
            Never the input or the checkpoint; an existing file only with ``--overwrite``.
        text_column: The text column of a csv / tsv / json / jsonl / parquet input.
        batch_size: Texts per forward pass (batches hold texts of similar length).
        accelerator: Lightning accelerator: ``auto``, ``cpu``, ``gpu`` ...
        overwrite: Replace an existing ``--output`` file.
    """
    check_arguments(ckpt_path, input, output, batch_size, overwrite)
    try:
        trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                            enable_model_summary=False, enable_progress_bar=False)
    except (MisconfigurationException, ValueError, ImportError) as error:  # none here, or no such name
        raise DataError(f"--accelerator {accelerator}: {' '.join(str(error).split())}; "
                        f"fix: pass --accelerator auto or cpu") from None
    model, tokenizer = load_checkpoint(ckpt_path)
    # stdout cannot be taken back: a bad byte is looked for first (a table file is read whole by
    # its reader anyway, and stdin or a pipe cannot be read twice).
    plain_file = input != "-" and Path(input).is_file() and Path(input).suffix.lower() not in files.FILE_KINDS
    if output == "-" and plain_file:
        for _ in read_chunks(input, text_column):
            pass
    lines = jsonl_lines(model.hparams.label_names)
    # Progress for a person at a terminal, once per chunk, unless the lines go to that terminal.
    watched = sys.stderr.isatty() and not (output == "-" and sys.stdout.isatty())
    # An input of blank lines alone is refused, so the lines of blank chunks are held until a text
    # turns up: none of them reaches stdout if it never does.
    seen, held, done = False, [], 0
    # Only short-lived objects without cycles are made here (~100k per chunk); a collection
    # they trigger walks every object of torch and Lightning instead: 0.3 s pauses, off meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with open_output(output, overwrite) as out:
            for texts in read_chunks(input, text_column):
                held.append(lines(texts, *label(trainer, model, tokenizer, texts, batch_size)))
                seen = seen or any(t.strip() for t in texts)
                if seen:
                    out.writelines(line for block in held for line in block)
                    held = []
                done += len(texts)
                if watched:
                    print(f"\rpredict: {done:,} texts labelled", end="", file=sys.stderr, flush=True)
            if watched:
                print(file=sys.stderr)
            if not seen:
                raise DataError(f"{'stdin' if input == '-' else input} has no text at all (empty, or blank "
                                f"lines only); fix: give one text per line")
    finally:
        if collecting:
            gc.enable()


class OneLineParser(ArgumentParser):
    """jsonargparse's parser, with its usage dump replaced by one ``error: ... fix:`` line."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        text = " ".join(str(message).split())
        fix = "see python -m project predict --help"
        if match := re.search(r"nrecognized arguments: (--\w+)", text):
            flags = [o for action in self._actions for o in action.option_strings]
            fix = next((f"did you mean {c}?" for c in difflib.get_close_matches(match.group(1), flags, n=1)), fix)
        print(f"error: {text}; fix: {fix}", file=sys.stderr)
        sys.exit(2)


def main(args: list[str]) -> None:
    parser = OneLineParser(prog="python -m project predict", description=predict.__doc__.split("\n")[0])
    parser.add_function_arguments(predict, fail_untyped=True, skip={"overwrite"})
    # A bare --overwrite as well as --overwrite true (a plain bool argument wants the value).
    parser.add_argument("--overwrite", action=ActionYesNo(), nargs="?", help="Replace an existing --output file.")
    config = parser.parse_args(args)
    try:
        predict(**config.as_dict())
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # the reader stopped early (| head): not an error of the input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice
        sys.exit(1)
