"""``python -m project predict --ckpt_path X``: label new text with a checkpoint alone (no config,
no data: the checkpoint carries the tokenizer, the label names and the model's settings), or with
``--model DIR``, a folder written by ``export``, on ONNX Runtime (the same input and output).

Reads one text per line from a text file or stdin, or a text column of a csv / tsv / json /
jsonl / parquet file (a model of text pairs: two columns, or a tab between the two texts of a
line); writes one JSON line per input line, in input order: ``{"text", "label",
"probabilities": {label: p}, "blank", "tokens", "unknown_tokens", "truncated"}`` (labeller.py
says what each holds). Blank lines are kept and flagged
(``"blank": true``, label and probabilities null; so is a text the tokenizer reads as no
tokens at all). The input streams through in chunks of ``CHUNK`` texts, so memory stays flat:
each chunk is labelled by the Python API's ``Predictor`` (or ``OnnxPredictor``: labeller.py,
batches of similar length) and written before the next is read. An
output file is written beside its name and renamed into place at the end; it never replaces
the input or the checkpoint, nor any other existing file without ``--overwrite``.
"""

import errno
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from json.encoder import encode_basestring as quote
from pathlib import Path
from typing import BinaryIO, TextIO

from jsonargparse import ActionYesNo, ArgumentParser

from project.atomic import Taken, atomic_write
from project.data import files
from project.errors import UserError, resave_as_utf8
from project.data.padding import SEP
from project.inference.labeller import Labeller, Read, load, one_sided, top_labels
from project.inference.onnx_predictor import FILES

# Texts per chunk. On 1M short lines the whole-input version peaked at 2.4 GB (mostly the
# tokenizer's Encoding objects); a chunk of this size costs tens of MB, and the ~7 ms that each
# Trainer.predict call adds is lost in the seconds a chunk takes.
CHUNK = 65_536
BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; it is not text


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
            raise UserError(
                f"{name}: not UTF-8 (byte 0x{raw[at]:02x} at offset {offset + at}, line {line}); "
                + resave_as_utf8(raw if offset == 0 else b"")
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


def _table_chunks(path: Path, text_columns: list[str], size: int) -> Iterator[list]:
    dataset, name, _ = files.load_file(path, "predict")  # read now: its errors come before any output
    for text_column in text_columns:
        if text_column not in dataset.column_names:
            raise UserError(f"{name} has no column '{text_column}' (it has: {', '.join(dataset.column_names)}); "
                            f"fix: set --text_column")
    columns = [dataset.data.column(c) for c in text_columns]  # memory-mapped Arrow: a chunk in Python at a time
    if len(columns) == 1:
        return (["" if t is None else str(t) for t in columns[0].slice(start, size).to_pylist()]
                for start in range(0, len(columns[0]), size))

    def pairs(start: int) -> list[tuple[str, ...]]:
        parts = [column.slice(start, size).to_pylist() for column in columns]
        pairs = [tuple("" if t is None else str(t) for t in pair) for pair in zip(*parts)]
        for i, pair in enumerate(pairs):  # which row, as for training data
            check_pair(pair, text_columns, f"{name} row {start + i + 1}")
        return pairs

    return (pairs(start) for start in range(0, len(columns[0]), size))


def check_pair(pair: "list[str] | tuple[str, ...]", text_columns: list[str], where: str) -> None:
    """A pair with one text blank, or a text holding ``[SEP]`` (the pair's own separator), is
    refused in one line that says ``where`` it is."""
    if (j := one_sided(pair)) is not None:
        raise UserError(f"{where}: '{text_columns[j]}' is blank, and the model reads pairs ({', '.join(text_columns)}); "
                        f"fix: fill it in, or delete that row")
    if len(pair) == 2 and (j := next((j for j, text in enumerate(pair) if SEP in text), None)) is not None:
        raise UserError(f"{where}: '{text_columns[j]}' holds {SEP}, the token that separates a pair's texts; "
                        f"fix: remove it from the text")


def _pair_lines(chunks: Iterator[list[str]], name: str, text_columns: list[str]) -> Iterator[list[tuple[str, ...]]]:
    """Text lines as pairs: the texts of a line separated by tabs (a further tab belongs to the
    last text); a blank line is a blank pair."""
    n, before = len(text_columns), 0
    for lines in chunks:
        out = []
        for i, line in enumerate(lines):
            parts = line.split("\t", n - 1)
            if len(parts) < n and line.strip():
                raise UserError(f"{name} line {before + i + 1} has {len(parts)} text(s), and the model reads "
                                f"{n} per line ({', '.join(text_columns)}); fix: a tab between the texts of each "
                                f"line, or a csv / jsonl file with those columns")
            if len(parts) == n:
                check_pair(parts, text_columns, f"{name} line {before + i + 1}")
            out.append(tuple(parts) if len(parts) == n else ("",) * n)
        before += len(lines)
        yield out


def read_chunks(input: str, text_column: str | list[str], size: int = CHUNK) -> Iterator[list]:
    """The input's texts, ``size`` at a time, in order: strings, or tuples of several columns'
    texts (a pair) where ``text_column`` is a list."""
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    if input != "-" and Path(input).suffix.lower() in files.FILE_KINDS:
        return _table_chunks(Path(input), columns, size)
    chunks = _text_chunks(sys.stdin.buffer, "stdin", size) if input == "-" else _file_chunks(input, size)
    return chunks if len(columns) == 1 else _pair_lines(chunks, "stdin" if input == "-" else input, columns)


def text_columns(given: str | list[str] | None, model_columns: tuple[str, ...]) -> str | list[str]:
    """The input's text column(s): ``--text_column``, or by default ``text`` for a model of one
    text and the model's own columns for a model of pairs; a count the model does not read is refused."""
    if given is None:
        return "text" if len(model_columns) == 1 else list(model_columns)
    count = 1 if isinstance(given, str) else len(given)
    if count != len(model_columns):
        reads = "one text" if len(model_columns) == 1 else f"{len(model_columns)} texts ({', '.join(model_columns)})"
        raise UserError(f"--text_column names {count} column(s), and the model reads {reads} at a time; fix: "
                        + ("one column, e.g. --text_column text" if len(model_columns) == 1 else
                           f"--text_column [{', '.join(model_columns)}] with your columns' names, or leave it out"))
    return given


def _exists_error(output: str) -> UserError:
    return UserError(f"--output {output} already exists; "
                     f"fix: pass --overwrite to replace it, or choose another --output")


def check_arguments(ckpt_path: str | None, model: str | None, input: str, output: str, batch_size: int,
                    overwrite: bool) -> None:
    """Refuse what cannot work before anything is loaded, and every output that would replace a
    file that predict did not write: the input and the model never, even with --overwrite."""
    if batch_size < 1:
        raise UserError(f"--batch_size is {batch_size}; fix: 1 or more")
    if input != "-" and Path(input).is_dir():
        raise UserError(f"--input {input} is a folder; fix: pass a file inside it, or - for stdin")
    if input != "-" and not Path(input).exists():  # a pipe is fine: --input <(zcat texts.gz)
        raise UserError(f"{input}: no such file; fix: pass an existing file to --input, or - for stdin")
    if output == "-":
        return
    target = Path(output)
    if output.endswith("/") or target.is_dir():
        raise UserError(f"--output {output} is a folder; fix: name a file, e.g. {target / 'labels.jsonl'}")
    if not target.parent.is_dir():
        raise UserError(f"{output}: no folder {target.parent}; fix: create it, or pass - for stdout")
    kept = [(input, "the input (--input)"), (ckpt_path, "the checkpoint (--ckpt_path)"),
            *((str(Path(model) / name), f"the model's {name} (--model)") for name in (*FILES, "model_card.md") if model)]
    for given, what in kept:
        # Same inode: ./x, dir/../x, a symlink or a hard link to x all count as x.
        if given not in ("-", None) and os.path.exists(output) and os.path.exists(given) and os.path.samefile(output, given):
            raise UserError(f"--output {output} is {what}, which predict never replaces; "
                            f"fix: write the labels to another file")
    if target.exists() and not target.is_file():  # a device or a pipe: renaming onto it would replace it
        raise UserError(f"--output {output} is not a regular file; fix: pass - and redirect stdout")
    if os.path.lexists(target) and not overwrite:
        raise _exists_error(output)


@contextmanager
def open_output(output: str, overwrite: bool) -> Iterator[TextIO]:
    """stdout, or a new file beside ``output`` put in its place when the body ends (a reader
    never sees half a file; atomic.py) and removed if it fails. Without ``overwrite`` it is
    hard-linked into place, so a file that took the name while predict ran is kept."""
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        with atomic_write(output, "x", fix="choose another --output", replace=overwrite) as f:
            yield f
    except Taken:
        raise _exists_error(output) from None
    except OSError as error:  # a device error while writing: say so, not a traceback
        if error.errno not in (errno.EIO, errno.EROFS):
            raise
        raise UserError(f"cannot write {output} ({error.strerror}); fix: choose another --output") from None


def jsonl_lines(names: list[str], top_k: int | None = None, labeller: Labeller | None = None):
    """The writer of one chunk's lines (labeller.py's dicts as JSON): one str.format per line from a
    template made once, around json's own C string quoting (what json.dumps(ensure_ascii=False)
    calls): 3x faster than a json.dumps per dict. A multi-label ``labeller``'s lines hold
    ``labels`` (its ``given`` ones) where others hold ``label``."""
    quoted = [quote(name) for name in names]
    shares = ", ".join(f"{name.replace('{', '{{').replace('}', '}}')}: {{:.6f}}" for name in quoted)
    read = ', "tokens": {}, "unknown_tokens": {}, "truncated": {}}}\n'
    top = (', "top_k": [' + ", ".join(['{{"label": {}, "probability": {:.6f}}}'] * top_k) + "]") if top_k else ""
    multi = labeller is not None and labeller.multi_label
    key = '"labels": [{}]' if multi else '"label": {}'
    labelled_line = ('{{"text": {}, ' + key + ', "probabilities": {{' + shares + '}}, "blank": false' + top + read).format
    blank_line = ('{{"text": {}, ' + ('"labels": null' if multi else '"label": null')
                  + ', "probabilities": null, "blank": true' + (', "top_k": null' if top_k else "") + read).format
    json_bool = ("false", "true")

    def shown(text: str | tuple[str, ...]) -> str:  # a pair: a JSON list of its texts
        return quote(text) if isinstance(text, str) else "[" + ", ".join(map(quote, text)) + "]"

    def lines(texts: list, read: Read) -> list[str]:
        rows = read.probabilities.tolist()
        best = top_labels(read.probabilities, top_k or 1).tolist()
        if multi:  # each line's labels as one JSON list's inside
            answer = [", ".join(quoted[j] for j in chosen) for chosen in labeller.given(read.probabilities)]
        else:
            answer = [quoted[first[0]] for first in best]
        return [labelled_line(shown(text), said, *row,
                              *(value for i in first[:top_k or 0] for value in (quoted[i], row[i])),
                              tokens, unknown, json_bool[cut]) if keep else
                blank_line(shown(text), tokens, unknown, json_bool[cut])
                for text, keep, first, row, tokens, unknown, cut, said in zip(texts, read.labelled, best, rows, read.tokens,
                                                                              read.unknown_tokens, read.truncated, answer)]

    return lines


def write_jsonl(texts: list[str], read: Read, names: list[str], output: str) -> None:
    """All lines at once (benchmarks/predict_throughput.py times the writing alone with it)."""
    with open_output(output, overwrite=True) as f:
        f.writelines(jsonl_lines(names)(texts, read))


def predict(
    ckpt_path: str | None = None,
    model: str | None = None,
    input: str = "-",
    output: str = "-",
    text_column: str | list[str] | None = None,
    batch_size: int = 256,
    accelerator: str = "auto",
    devices: int | list[int] = 1,
    precision: str = "32-true",
    calibrated: bool = True,
    top_k: int | None = None,
    overwrite: bool = False,
) -> None:
    """Label new text with a trained checkpoint: one JSON line per input text, in input order.

    Args:
        ckpt_path: A checkpoint written by ``python -m project fit`` (run on PyTorch).
        model: Or a folder written by ``python -m project export`` (run on ONNX Runtime).
        input: A text file (one text per line; for a model of text pairs, a tab between the two
            texts of a line), a csv / tsv / json / jsonl / parquet file with ``text_column``, or
            ``-`` for stdin.
        output: The JSONL file to write (renamed into place when complete), or ``-`` for stdout.
            Never the input or the checkpoint; an existing file only with ``--overwrite``.
        text_column: The text column of a csv / tsv / json / jsonl / parquet input; for a model
            of text pairs, its two columns. null: ``text``, or a pair model's own columns.
        batch_size: Texts per forward pass (batches hold texts of similar length).
        accelerator: Lightning accelerator: ``auto``, ``cpu``, ``gpu`` / ``cuda``, ``mps``.
        devices: One device: ``1`` (the first), or a list of one device index, e.g. ``[1]``.
        precision: Lightning precision: ``32-true``, ``bf16-mixed``, ``16-mixed`` ... (an
            exported ``--model`` runs in 32-true).
        calibrated: Apply the temperature fitted on validation (stored in the checkpoint); false:
            the model's raw probabilities.
        top_k: Also write ``"top_k"``: the K most probable labels, best first, each
            ``{"label", "probability"}`` (null for a blank line).
        overwrite: Replace an existing ``--output`` file.
    """
    check_arguments(ckpt_path, model, input, output, batch_size, overwrite)
    predictor = load(ckpt_path, model, accelerator, devices, precision, batch_size, calibrated)
    predictor.check_top_k(top_k)
    text_column = text_columns(text_column, predictor.text_columns)
    print(f"predict: {predictor.probabilities_kind}", file=sys.stderr, flush=True)
    # stdout cannot be taken back: a bad byte is looked for first (a table file is read whole by
    # its reader anyway, and stdin or a pipe cannot be read twice).
    plain_file = input != "-" and Path(input).is_file() and Path(input).suffix.lower() not in files.FILE_KINDS
    if output == "-" and plain_file:
        for _ in read_chunks(input, text_column):
            pass
    lines = jsonl_lines(predictor.label_names, top_k, predictor)
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
                read = predictor.probabilities(predictor.inputs(texts))
                held.append(lines(texts, read))
                seen = seen or any((t if isinstance(t, str) else "".join(t)).strip() for t in texts)
                if seen:
                    out.writelines(line for block in held for line in block)
                    held = []
                done += len(texts)
                if watched:
                    print(f"\rpredict: {done:,} texts labelled", end="", file=sys.stderr, flush=True)
            if watched:
                print(file=sys.stderr)
            if not seen:
                raise UserError(f"{'stdin' if input == '-' else input} has no text at all (empty, or blank "
                                f"lines only); fix: give one text per line")
    finally:
        if collecting:
            gc.enable()


def add_arguments(parser: ArgumentParser) -> None:
    """``predict``'s flags, on its subcommand parser (cli.py)."""
    parser.add_function_arguments(predict, fail_untyped=True, skip={"overwrite"})
    # A bare --overwrite as well as --overwrite true (a plain bool argument wants the value).
    parser.add_argument("--overwrite", action=ActionYesNo(), nargs="?", help="Replace an existing --output file.")


def run(config: dict) -> None:
    try:
        predict(**{k: v for k, v in config.items() if k != "config"})
    except BrokenPipeError:  # the reader stopped early (| head): not an error of the input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice
        sys.exit(1)
