"""``predict --model DIR`` (ONNX Runtime) against ``predict --ckpt_path X`` (PyTorch through
Lightning's ``Trainer.predict``) on the same texts, in one run, same machine: tokens/s of each,
end to end (model load to the last JSON line written), and their ratio.

    python benchmarks/onnx_predict.py --ckpt_path lightning_logs/bbc_news-lstm-version_0/checkpoints/last.ckpt
    python benchmarks/onnx_predict.py --ckpt_path X.ckpt --texts texts.txt --runs 5

Texts: ``--texts`` (one per line), else the 2,225 BBC News articles of the default data. The
checkpoint is exported once to a temporary folder; runs alternate between the two paths and the
table gives the medians. Tokens are those the model reads (after ``--data.max_length``).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from project.data.sources import load_bbc_news  # the articles as fit reads them
from project.inference.export import export
from project.inference.predict import predict


def timed(texts_file: Path, out: Path, **model: str) -> float:
    start = time.perf_counter()
    predict(input=str(texts_file), output=str(out), overwrite=True, accelerator="cpu", **model)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--texts", help="a text file, one text per line (default: the BBC News articles)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, texts_file, out = Path(tmp) / "export", Path(tmp) / "texts.txt", Path(tmp) / "out.jsonl"
        texts = (Path(args.texts).read_text(encoding="utf-8").splitlines() if args.texts
                 else [" ".join(t.split()) for split in load_bbc_news(42).values() for t in split["text"]])
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        export(args.ckpt_path, str(folder))
        from tokenizers import Tokenizer  # noqa: PLC0415 - the export's tokenizer counts the tokens read

        tokens = sum(len(e.ids) for e in Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch_fast(texts))
        seconds: dict[str, list[float]] = {"pytorch (--ckpt_path)": [], "onnx runtime (--model)": []}
        timed(texts_file, out, model=str(folder))  # warm-up of both
        timed(texts_file, out, ckpt_path=args.ckpt_path)
        for run in range(args.runs):
            torch_s = timed(texts_file, out, ckpt_path=args.ckpt_path)
            onnx_s = timed(texts_file, out, model=str(folder))
            seconds["pytorch (--ckpt_path)"].append(torch_s)
            seconds["onnx runtime (--model)"].append(onnx_s)
            print(f"run {run + 1}: pytorch {tokens / torch_s:,.0f} tokens/s, onnx runtime {tokens / onnx_s:,.0f} "
                  f"tokens/s, ratio {torch_s / onnx_s:.2f}x", flush=True)
    print(f"\n{len(texts):,} texts, {tokens:,} tokens; medians of {args.runs} runs, alternating")
    for name, values in seconds.items():
        print(f"{name:24} {tokens / statistics.median(values):>10,.0f} tokens/s")
    ratios = [t / o for t, o in zip(*seconds.values())]
    print(f"onnx runtime / pytorch: {statistics.median(ratios):.2f}x (median of the per-run ratios)")


if __name__ == "__main__":
    main()
