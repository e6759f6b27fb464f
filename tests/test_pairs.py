"""Text pairs (issue 32): two ``--data.text_column``s joined by the ``[SEP]`` token, read by the
classifier either as one sequence or each text alone (``--model.pair_encoding separate``, the
default: InferSent's [u, v, |u - v|, u * v]); predict, export, serve and its page take pairs.

The unit tests split generated pairs and feed generated items and lines; one tiny real fit on
generated pair files then goes through predict (API, CLI on csv and tab lines), export (ONNX
parity) and serve (HTTP and Chromium)."""

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from project.commands.cli import main
from project.data.datamodule import TextDataModule
from project.data.tokenization import KINDS, train_tokenizer
from project.errors import UserError
from project.inference.labeller import Labeller
from project.inference.onnx_predictor import OnnxPredictor
from project.inference.predict import _pair_lines, text_columns
from project.inference.predictor import Predictor
from project.model.classifier import TextClassifier, split_pairs
from tests.helpers import (CHROMIUM, QUICK, ROOT, TINY, WITHOUT_TORCH, assert_contract, best_checkpoint, examples,
                           make_rows, refused, run_cli, write_rows)

SEP = 2  # [SEP]'s id in a trained tokenizer: after [PAD] and [UNK]


def pair_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows ``{question, answer, label}``: two texts of make_rows, "same" when their labels are."""
    first, second = make_rows(n, seed), make_rows(n, seed + 100)[::-1]
    return [{"question": a["sentence"], "answer": b["sentence"],
             "label": "same" if a["label"] == b["label"] else "different"} for a, b in zip(first, second)]


def write_pairs(folder: Path, counts: tuple[int, int, int] = (60, 15, 15)) -> dict[str, str]:
    return {split: write_rows(folder / f"{split}.csv", pair_rows(n, seed))
            for split, n, seed in zip(("train", "validation", "test"), counts, (1, 2, 3))}


PAIRS = "--data.text_column=[question, answer]"


# --- units: the split, the tokenizer, the data, the items and lines predict takes ---


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(3, 40), max_size=6), st.lists(st.integers(3, 40), max_size=6)),
                min_size=1, max_size=5), st.integers(0, 3))
def test_split_pairs_gives_each_text_its_own_row(pairs: list[tuple[list[int], list[int]]], extra: int) -> None:
    """Any pairs, either side empty, padded with extra columns: row i is the first text of pair i,
    row B + i its second, each length its own (an empty side: one padding token)."""
    rows = [a + [SEP] + b for a, b in pairs]
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.zeros(len(rows), max(map(len, rows)) + extra, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    split, split_lengths = split_pairs(ids, lengths, SEP)
    for i, text in enumerate([a for a, _ in pairs] + [b for _, b in pairs]):
        assert split_lengths[i].item() == max(len(text), 1)
        assert split[i, : len(text)].tolist() == text
        assert not split[i, len(text):].any()  # padding past it


def test_a_separate_pair_model_reads_each_pair_as_alone() -> None:
    """In a batch of pairs of any lengths, each pair's logits are those it gets alone (the exact
    encoder, per side), and swapping the texts of a pair changes them (the order is kept)."""
    torch.manual_seed(0)
    model = TextClassifier(vocab_size=40, label_names=["different", "same"], sep_id=SEP, hidden_size=8,
                           embedding_dim=8).eval()
    rows = [[5, 6, SEP, 7, 8, 9], [4, SEP, 3], [SEP, 9, 9], [5, 5, 5, 5, SEP], [7, SEP, 5, 6]]
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.zeros(len(rows), 6, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        together = model(ids, lengths)
        for i, row in enumerate(rows):
            alone = model(torch.tensor([row]), torch.tensor([len(row)]))
            torch.testing.assert_close(together[i], alone[0], atol=1e-6, rtol=0)
        swapped = model(torch.tensor([[7, 8, 9, SEP, 5, 6]]), torch.tensor([6]))
    assert not torch.allclose(swapped[0], together[0])
    assert model.classifier.in_features == 4 * model.pool.output_size  # [u, v, |u - v|, u * v]


@pytest.mark.parametrize("kind", KINDS)
def test_every_tokenizer_kind_keeps_sep_whole(kind: str) -> None:
    from datasets import Dataset

    texts = [f"{r['question']} [SEP] {r['answer']}" for r in pair_rows(40, 1)]
    tokenizer = train_tokenizer(Dataset.from_dict({"text": texts}), kind, 200, 1, lowercase=True, pairs=True)
    assert tokenizer.token_to_id("[SEP]") == SEP
    assert tokenizer.encode("Great FILM [SEP] awful plot").ids.count(SEP) == 1


def test_two_columns_are_a_pair_one_or_three_are_not(tmp_path: Path) -> None:
    files = write_pairs(tmp_path)
    pair = TextDataModule(data_files=files, text_column=["question", "answer"], min_frequency=1)
    assert pair.sep_id == SEP
    assert all(ids.count(SEP) == 1 for ids in pair.dataset["train"].data.column("input_ids").to_pylist())
    assert pair.texts("train", [0])[0] == " [SEP] ".join(pair_rows(60, 1)[0][c] for c in ("question", "answer"))
    # Each pair cut at max_length longer text first: both texts keep tokens.
    short = TextDataModule(data_files=files, text_column=["question", "answer"], min_frequency=1, max_length=9)
    for ids in short.dataset["train"].data.column("input_ids").to_pylist():
        assert len(ids) <= 9 and 0 < ids.index(SEP) < len(ids) - 1
    assert TextDataModule(data_files=files, text_column="question", min_frequency=1).sep_id is None
    rows = [{**row, "extra": "x"} for row in pair_rows(60, 1)]
    three = {**files, "train": write_rows(tmp_path / "three.csv", rows)}
    assert TextDataModule(data_files=three, text_column=["question", "answer", "extra"], min_frequency=1,
                          validation_split=None).sep_id is None


def test_a_pair_with_a_side_missing_in_training_data_is_one_line(tmp_path: Path) -> None:
    rows = pair_rows(60, 1)
    rows[7]["answer"] = ""  # csv: an empty cell reads as missing
    files = {**write_pairs(tmp_path), "train": write_rows(tmp_path / "gap.csv", rows)}
    refused(["fit", f"--data.data_files={files}", PAIRS, *TINY, f"--trainer.default_root_dir={tmp_path}"],
            tmp_path, "line 9", "'answer' is empty")
    rows = pair_rows(60, 1)
    rows[2]["question"] = "a question [SEP] with the separator in it"
    files = {**files, "train": write_rows(tmp_path / "sep.csv", rows)}
    refused(["fit", f"--data.data_files={files}", PAIRS, *TINY, f"--trainer.default_root_dir={tmp_path}"],
            tmp_path, "line 4", "'question' holds [SEP], the token that separates the two texts of a pair")


class Columns(Labeller):
    """A labeller's text settings alone (``joined`` needs no model)."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.text_columns, self.text_separator = columns, " [SEP] "


ITEMS = st.recursive(st.none() | st.text(max_size=5) | st.integers() | st.binary(max_size=3),
                     lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner), max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(ITEMS, max_size=4))
def test_any_items_are_joined_as_pairs_or_refused_in_one_line(items: list) -> None:
    """What a caller may pass a pair model: the pairs of two strings are kept as pairs for the
    tokenizer, anything else is a UserError naming the item, never another exception."""
    labeller = Columns(("question", "answer"))
    valid = all(isinstance(i, list | tuple) and len(i) == 2 and all(isinstance(t, str) for t in i)
                and bool(i[0].strip()) == bool(i[1].strip()) for i in items)
    try:
        joined = labeller.inputs(items)
    except UserError as error:
        assert not valid and "texts[" in str(error) and "fix:" in str(error) and "\n" not in str(error)
        return
    assert valid
    assert joined == [tuple(item) for item in items]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_characters="\n\r"), max_size=8), min_size=1, max_size=6))
def test_pair_lines_split_at_the_first_tab_or_name_the_line(lines: list[str]) -> None:
    columns = ["question", "answer"]
    try:
        pairs = [p for chunk in _pair_lines(iter([lines[:3], lines[3:]]), "in.txt", columns) for p in chunk]
    except UserError as error:
        bad = next(i for i, line in enumerate(lines) if line.strip() and (
            "\t" not in line or not all(part.strip() for part in line.split("\t", 1))))
        assert f"in.txt line {bad + 1}" in str(error)
        return
    assert pairs == [tuple(line.split("\t", 1)) if "\t" in line else ("", "") for line in lines]
    assert all(bool(a.strip()) == bool(b.strip()) for a, b in pairs)  # a pair with a blank side: refused


def test_a_pair_line_with_a_blank_side_is_refused() -> None:
    with pytest.raises(UserError, match=r"in.txt line 2: 'answer' is blank"):
        list(_pair_lines(iter([["a\tb", "a\t  "]]), "in.txt", ["question", "answer"]))


def test_text_column_counts_must_match_the_model() -> None:
    assert text_columns(None, ("text",)) == "text"
    assert text_columns(None, ("q", "a")) == ["q", "a"]
    assert text_columns(["x", "y"], ("q", "a")) == ["x", "y"]
    with pytest.raises(UserError, match=r"reads 2 texts \(q, a\)"):
        text_columns("x", ("q", "a"))
    with pytest.raises(UserError, match="reads one text"):
        text_columns(["x", "y"], ("text",))


# --- a real pair run, through predict, export and serve ---


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pairs")
    files = write_pairs(root)
    cli = main(["fit", f"--data.data_files={files}", PAIRS, *TINY, "--data.batch_size=16", "--trainer.max_epochs=2",
                f"--trainer.default_root_dir={root}"])
    return cli, root, files


PAIRS_GIVEN = [("great superb film", "awful boring plot"), ("great film", "lovely superb film"), ("", ""),
               ("film", "plot")]


@pytest.mark.slow
def test_pair_checkpoint_predicts_exports_and_serves_the_same(pair_run, tmp_path: Path, capsys) -> None:
    cli, root, files = pair_run
    ckpt = best_checkpoint(cli)
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert predictor.text_columns == ("question", "answer")
    api = predictor.predict(PAIRS_GIVEN, top_k=2)
    assert [line["text"] for line in api] == [list(p) for p in PAIRS_GIVEN]
    assert [line["blank"] for line in api] == [False, False, True, False]
    # The CLI on tab lines and on the test csv (the model's own columns by default).
    lines = tmp_path / "pairs.txt"
    lines.write_text("".join("\t".join(p) + "\n" for p in PAIRS_GIVEN))
    capsys.readouterr()
    main(["predict", f"--ckpt_path={ckpt}", f"--input={lines}"])
    out = capsys.readouterr().out
    assert [json.loads(line)["label"] for line in out.splitlines()] == [line["label"] for line in api]
    # Export: parity on pairs (the graph splits them), then predict --model without torch.
    main(["export", f"--ckpt_path={ckpt}", f"--output={tmp_path / 'export'}"])
    onnx = OnnxPredictor.from_folder(str(tmp_path / "export"))
    assert onnx.text_columns == ("question", "answer")
    test_pairs = [(r["question"], r["answer"]) for r in pair_rows(15, 3)]
    expected = predictor.probabilities(predictor.inputs(test_pairs)).probabilities
    got = onnx.probabilities(onnx.inputs(test_pairs)).probabilities
    assert np.abs(got - expected).max() < 1e-4
    # (A csv is read by datasets, whose hashing imports torch where sys.modules names it, as
    # WITHOUT_TORCH does: tab lines show predict --model reads pairs without torch.)
    assert subprocess.run([*WITHOUT_TORCH, "predict", f"--model={tmp_path / 'export'}", f"--input={lines}"], cwd=ROOT,
                          capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT)}).stdout == out
    capsys.readouterr()  # export's line
    main(["predict", f"--model={tmp_path / 'export'}", f"--input={files['test']}"])
    csv_out = capsys.readouterr().out
    by_csv = [json.loads(line) for line in csv_out.splitlines()]
    assert [line["text"] for line in by_csv] == [list(p) for p in test_pairs]
    assert np.abs(np.array([list(line["probabilities"].values()) for line in by_csv]) - expected).max() < 1e-4


@pytest.mark.slow
def test_pair_refusals_in_predict(pair_run, tmp_path: Path) -> None:
    cli, root, files = pair_run
    ckpt = best_checkpoint(cli)
    lines = tmp_path / "one.txt"
    lines.write_text("great film\tawful plot\nno tab on this line\n")
    refused(["predict", f"--ckpt_path={ckpt}", f"--input={lines}"], tmp_path, "line 2 has 1 text(s)", "a tab")
    refused(["predict", f"--ckpt_path={ckpt}", f"--input={files['test']}", "--text_column=question"], tmp_path,
            "reads 2 texts (question, answer)")
    rows = pair_rows(5, 3)
    rows[2]["answer"] = ""
    refused(["predict", f"--ckpt_path={ckpt}", f"--input={write_rows(tmp_path / 'gap.csv', rows)}"], tmp_path,
            "row 3", "'answer' is blank")
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(UserError, match=r"texts\[1\] is str, not a pair"):
        predictor.predict([("a", "b"), "just one"])
    with pytest.raises(UserError, match=r"texts\[0\] has an empty answer"):
        predictor.predict([("a", " ")])


@pytest.fixture(scope="module")
def pair_url(pair_run, tmp_path_factory: pytest.TempPathFactory):
    """The pair run's export served where torch and Lightning cannot be imported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_benchmark", ROOT / "benchmarks" / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = tmp_path_factory.mktemp("pair_serve") / "model"
    main(["export", f"--ckpt_path={best_checkpoint(pair_run[0])}", f"--output={folder}"])
    with bench.server([*WITHOUT_TORCH, "serve", f"--model={folder}", "--port=0"], env={"PYTHONPATH": str(ROOT)}) as url:
        yield url, folder


def post(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + "predict", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_serve_takes_pairs_and_refuses_what_is_not_one(pair_url) -> None:
    url, folder = pair_url
    status, body = post(url, {"pairs": [list(p) for p in PAIRS_GIVEN]})
    assert status == 200
    expected = OnnxPredictor.from_folder(str(folder)).predict(PAIRS_GIVEN)
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
    assert [p["text"] for p in body["predictions"]] == [list(p) for p in PAIRS_GIVEN]
    for bad, says in (({"texts": ["one text"]}, '"texts" sent to a model that reads pairs of texts (question, answer)'),
                      ({"pairs": [["a"]]}, '"pairs"[0] is a list of 1, not a list of 2 texts'),
                      ({"pairs": [["a", None]]}, '"pairs"[0][1] is null, not a string'),
                      ({"pairs": [["a", " "]]}, '"pairs"[0] has an empty answer'),
                      ({"pairs": [["a [SEP] b", "c"]]}, '"pairs"[0][0] (question) holds [SEP]'),
                      ({"pairs": ["a\tb"]}, '"pairs"[0] is str, not a list of 2 texts')):
        status, answer = post(url, bad)
        assert status == 422 and says in answer["error"] and "fix:" in answer["error"], answer
    assert post(url, {"pairs": [["great film", "awful plot"]]})[0] == 200  # the server went on


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).is_file() and not __import__("os").environ.get("CI"), reason="no chromium")
def test_the_page_of_a_pair_model_has_a_box_per_text(pair_url, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.helpers import FLAGS

    url, folder = pair_url
    pair = ("great superb film", "awful boring plot")
    expected = OnnxPredictor.from_folder(str(folder)).predict([pair])[0]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = chromium.new_page(viewport={"width": 720, "height": 640})
        page.goto(url)
        page.wait_for_selector("#text1")  # the second box, made once /health said the columns
        assert page.inner_text("label[for=text]") == "question" and page.inner_text("label[for=text1]") == "answer"
        page.fill("#text", pair[0])
        page.fill("#text1", pair[1])
        page.click("#predict")
        page.wait_for_function("document.querySelectorAll('#bars .row').length > 0")
        assert page.inner_text("#label") == expected["label"]
        assert page.inner_text("#read").startswith(f"Read {expected['tokens']} tokens")
        page.fill("#text1", "")  # one text of the pair missing: the server's line, on the page
        page.click("#predict")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "has an empty answer" in page.inner_text("#error")
        chromium.close()


@pytest.mark.slow
def test_pretrain_on_pairs_then_fit_from_it_and_a_single_text_lm_is_refused(tmp_path: Path) -> None:
    """A language model pretrained on the pairs' text (with its [SEP]) starts a pair classifier;
    one pretrained on one of the columns never read [SEP]: refused in one line."""
    files = write_pairs(tmp_path)
    lm = ["pretrain", f"--data.data_files={files}", *TINY, "--trainer.max_epochs=1"]
    main([*lm, PAIRS, f"--trainer.default_root_dir={tmp_path / 'pair_lm'}"])
    main([*lm, "--data.text_column=question", f"--trainer.default_root_dir={tmp_path / 'one_lm'}"])
    ckpts = {name: next((tmp_path / name).rglob("last.ckpt")) for name in ("pair_lm", "one_lm")}
    fit = ["fit", f"--data.data_files={files}", PAIRS, "--data.min_frequency=1", "--trainer.max_steps=2",
           "--trainer.logger=false", "--test_after_fit=false", "--trainer.enable_progress_bar=false"]
    refused([*fit, f"--model.init_from={ckpts['one_lm']}", f"--trainer.default_root_dir={tmp_path / 'a'}"], tmp_path,
            "the language model never read the [SEP]")
    cli = main([*fit, f"--model.init_from={ckpts['pair_lm']}", f"--trainer.default_root_dir={tmp_path / 'b'}"])
    assert cli.model.separate_pairs and cli.trainer.global_step == 2


PAIR_CELLS = st.one_of(st.sampled_from(["great film", "awful plot", "", " ", "a [SEP] b", "[SEP]", "x\ty", "[sep]"]),
                       st.none(), st.integers(), st.text(max_size=8), st.just(["a list"]))


@pytest.mark.slow
@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.tuples(st.integers(0, 1), PAIR_CELLS), min_size=1, max_size=3),
       encoding=st.sampled_from(["separate", "joined"]))
def test_any_pair_cells_train_or_are_refused_in_one_line(tmp_path: Path, cells: list, encoding: str) -> None:
    """A pair jsonl file with a few generated cells in either column: fit trains, or refuses in
    one line (exit 2, no traceback); a file of plainly fine pairs trains."""
    rows = pair_rows(12, 1)
    for i, (side, value) in enumerate(cells):
        rows[3 * i][("question", "answer")[side]] = value
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = run_cli(["fit", f"--data.data_files={{train: {train}}}", PAIRS, f"--model.pair_encoding={encoding}",
                         *QUICK, "--data.validation_size=0.5", f"--trainer.default_root_dir={folder}"])
    plainly_fine = all(isinstance(v, str) and v.strip() and "[SEP]" not in v for _, v in cells)
    assert assert_contract(code, err, folder) or not plainly_fine, err[-2000:]
