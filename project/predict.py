"""``python -m project predict --ckpt_path X``: label new text with a checkpoint alone (no config,
no data: the checkpoint carries the tokenizer, the label names and the model's settings).

Reads one text per line from a text file or stdin, or a text column of a csv / tsv / json /
jsonl / parquet file; writes one JSON line per input line, in input order:
``{"text", "label", "probabilities": {label: p}, "blank"}``. Blank lines are kept and flagged
(``"blank": true``, label and probabilities null; so is a text the tokenizer reads as no
tokens at all). Texts are tokenized in one Rust call, sorted by length and cut into batches
(little padding), padded as in training, and run through Lightning's ``Trainer.predict``.
"""

import gc
import os
import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch
import numpy as np
import pyarrow as pa
from lightning.pytorch.callbacks import RichProgressBar
from json.encoder import encode_basestring as quote
from jsonargparse import ArgumentParser
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from project import sources
from project.batching import pad_batch
from project.checkpoints import read_checkpoint
from project.checks import DataError
from project.data import TextDataModule
from project.model import TextClassifier
from project.tokenization import pad_id

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


def _lines(raw: bytes, name: str) -> list[str]:
    """One text per line; a final newline ends the last line rather than adding a blank one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{name}: not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}, line {line}); "
            f"fix: re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_texts(input: str, text_column: str) -> list[str]:
    if input == "-":
        texts, name = _lines(sys.stdin.buffer.read(), "stdin"), "stdin"
    elif not Path(input).is_file():
        raise DataError(f"{input}: no such file; fix: pass an existing file to --input, or - for stdin")
    elif Path(input).suffix.lower() in sources.FILE_KINDS:
        dataset, name, _ = sources.load_file(Path(input), "predict")
        if text_column not in dataset.column_names:
            raise DataError(f"{name} has no column '{text_column}' (it has: {', '.join(dataset.column_names)}); "
                            f"fix: set --text_column")
        texts = ["" if t is None else str(t) for t in dataset[text_column]]
    else:  # any other file: plain text, one text per line
        texts, name = _lines(Path(input).read_bytes(), input), input
    if not any(t.strip() for t in texts):
        raise DataError(f"{name} has no text at all (empty, or blank lines only); fix: give one text per line")
    return texts


def predict(
    ckpt_path: str,
    input: str = "-",
    output: str = "-",
    text_column: str = "text",
    batch_size: int = 256,
    accelerator: str = "auto",
) -> None:
    """Label each input text with a trained checkpoint; JSON lines out, in input order.

    Args:
        ckpt_path: A checkpoint written by ``python -m project fit``.
        input: A text file (one text per line), a csv / tsv / json / jsonl / parquet file with
            ``text_column``, or ``-`` for stdin.
        output: The JSONL file to write (written whole, then renamed into place), or ``-`` for stdout.
        text_column: The text column of a csv / tsv / json / jsonl / parquet input.
        batch_size: Texts per forward pass (batches hold texts of similar length).
        accelerator: Lightning accelerator: ``auto``, ``cpu``, ``gpu`` ...
    """
    if output != "-" and not Path(output).parent.is_dir():
        raise DataError(f"{output}: no folder {Path(output).parent}; fix: create it, or pass - for stdout")
    # Only short-lived objects without cycles are made here (~100k of them); a collection they
    # trigger walks every object of torch and Lightning instead: 0.3 s pauses, off meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _predict(ckpt_path, input, output, text_column, batch_size, accelerator)
    finally:
        if collecting:
            gc.enable()


def _predict(ckpt_path: str, input: str, output: str, text_column: str, batch_size: int, accelerator: str) -> None:
    model, tokenizer = load_checkpoint(ckpt_path)
    texts = read_texts(input, text_column)
    # One Rust call for every text (offsets skipped: unused), straight into Arrow; blank lines
    # become empty rows. (A Dataset.map here added 10% to the whole predict time.)
    ids = pa.array([e.ids if text.strip() else [] for text, e in zip(texts, tokenizer.encode_batch_fast(texts))],
                   pa.list_(pa.int32()))
    order, batches = length_sorted_batches(ids, batch_size)
    loader = DataLoader(batches, batch_size=None, collate_fn=partial(pad_batch, pad_id=pad_id(tokenizer)))
    # A progress bar only for a person watching a terminal (stdout is the data otherwise); a
    # redraw per batch cost 15% of the run, so it is redrawn about 20 times in all.
    watched = output != "-" and sys.stdout.isatty()
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=watched,
                        callbacks=[RichProgressBar(refresh_rate=max(1, len(batches) // 20))] if watched else [])
    probabilities = torch.zeros(len(texts), len(model.hparams.label_names))
    labelled = np.zeros(len(texts), dtype=bool)
    if len(order):
        probabilities[torch.from_numpy(order)] = torch.cat(trainer.predict(model, loader)).float()
        labelled[order] = True
    write_jsonl(texts, labelled.tolist(), probabilities, model.hparams.label_names, output)


def write_jsonl(texts: list[str], labelled: list[bool], probabilities: torch.Tensor, names: list[str],
                output: str) -> None:
    # One str.format per line from a template made once, around json's own C string quoting
    # (what json.dumps(ensure_ascii=False) calls): 3x faster than a json.dumps per dict.
    quoted = [quote(name) for name in names]
    shares = ", ".join(f"{name.replace('{', '{{').replace('}', '}}')}: {{:.6f}}" for name in quoted)
    labelled_line = ('{{"text": {}, "label": {}, "probabilities": {{' + shares + '}}, "blank": false}}\n').format
    blank_line = '{{"text": {}, "label": null, "probabilities": null, "blank": true}}\n'.format
    best = probabilities.argmax(-1).tolist()
    lines = (labelled_line(quote(text), quoted[b], *row) if keep else blank_line(quote(text))
             for text, keep, b, row in zip(texts, labelled, best, probabilities.tolist()))
    if output == "-":
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        return
    target = Path(output)
    partial_file = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # no half-written output
    with partial_file.open("w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(partial_file, target)


def main(args: list[str]) -> None:
    parser = ArgumentParser(prog="python -m project predict", description=predict.__doc__.split("\n")[0])
    parser.add_function_arguments(predict, fail_untyped=True)
    config = parser.parse_args(args)
    try:
        predict(**config.as_dict())
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
