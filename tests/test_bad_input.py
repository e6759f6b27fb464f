"""The bad-input catalogue: wrong CLI flags, YAML, data, checkpoints and predict input. Each is
refused with exactly one ``error: ... fix: ...`` line on stderr, exit code 2 and no traceback.
The troubleshooting table in docs/troubleshooting.md has a row for every case here (checked below)."""

from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, TINY, assert_contract, best_checkpoint, make_rows, run_cli, write_rows, write_splits

# A 2-step tiny fit; the text column first: "missing text column" leaves it out (FIT[1:]).
FIT = ["--data.text_column=sentence", "--data.batch_size=16", "--trainer.max_steps=2", *TINY]

# case -> (arguments, with {files} {ckpt} {tmp} filled in; what the error line must name)
CASES = {
    "unknown cell type": (["fit", "--model.cell_type=lsmt"], "cell_type"),
    "misspelt flag": (["fit", "--model.hiden_size=3"], "hidden_size"),
    "text for a number": (["fit", "--model.hidden_size=abc"], "hidden_size"),
    "negative size": (["fit", "{files}", *FIT, "--model.hidden_size=-3"], "hidden_size"),
    "zero layers": (["fit", "{files}", *FIT, "--model.num_layers=0"], "num_layers"),
    "dropout of 1 or more": (["fit", "{files}", *FIT, "--model.embedding_dropout=1.5"], "embedding_dropout"),
    "learning rate not positive": (["fit", "{files}", *FIT, "--model.learning_rate=0"], "learning_rate"),
    "warm-up share out of range": (["fit", "{files}", *FIT, "--model.warmup=1.5"], "warmup"),
    "class weights of the wrong length": (["fit", "{files}", *FIT, "--model.class_weights=[1,2]"], "class_weights"),
    "negative focal exponent": (["fit", "{files}", *FIT, "--model.loss=focal", "--model.focal_gamma=-1"], "focal_gamma"),
    "focal loss with label smoothing": (["fit", "{files}", *FIT, "--model.loss=focal", "--model.label_smoothing=0.1"],
                                        "label_smoothing"),
    "batch size 0": (["fit", "{files}", *FIT, "--data.batch_size=0"], "batch_size"),
    "max length 0": (["fit", "{files}", *FIT, "--data.max_length=0"], "max_length"),
    "train fraction 0": (["fit", "{files}", *FIT, "--data.train_fraction=0"], "train_fraction"),
    "unknown tokenizer": (["fit", "{files}", *FIT, "--data.tokenizer=sentencepiece"], "tokenizer"),
    "unknown subcommand": (["trian"], "trian"),
    "gradual unfreezing under plain DDP": (["fit", "{files}", *FIT, "--model.gradual_unfreezing=true",
                                            "--trainer.strategy=ddp"], "ddp_find_unused_parameters_true"),
    "missing config file": (["fit", "--config={tmp}/nope.yaml"], "nope.yaml"),
    "misspelt key in YAML": (["fit", "--config={tmp}/typo.yaml"], "hiden_size"),
    "YAML that does not parse": (["fit", "--config={tmp}/broken.yaml"], "broken.yaml"),
    "missing data file": (["fit", "--data.data_files={{train: {tmp}/none.csv}}", *FIT], "none.csv"),
    "a data file as --data.path": (["fit", "--data.path={tmp}/empty.csv", *FIT], "--data.data_files"),
    "a Hub dataset out of reach": (["fit", "--data.path=nosuch-user/nosuch-data", *FIT], "'nosuch-user/nosuch-data'"),
    "missing text column": (["fit", "{files}", *FIT[1:]], "'text'"),
    "missing label column": (["fit", "{files}", *FIT, "--data.label_column=sentiment"], "sentiment"),
    "empty training file": (["fit", "--data.data_files={{train: {tmp}/empty.csv}}", *FIT], "empty"),
    "no accelerator of that kind": (["fit", "{files}", *FIT, "--trainer.accelerator=cuda"], "CUDA"),
    "loss that is not finite": (["fit", "{files}", *FIT, "--model.learning_rate=1e30",
                                 "--trainer.max_steps=30"], "learning_rate"),
    "missing checkpoint": (["test", "{files}", *FIT, "--ckpt_path={tmp}/none.ckpt"], "none.ckpt"),
    "truncated checkpoint": (["test", "{files}", *FIT, "--ckpt_path={tmp}/truncated.ckpt"], "truncated.ckpt"),
    # Rows 2, 77 and 78 of the 2026-12-05 trial: "no such checkpoint" for a folder, torch.save advice for a text file.
    "a run folder for a checkpoint": (["export", "--ckpt_path={tmp}/run", "--output={tmp}/x"],
                                      "is a folder, not a checkpoint; fix: pass the .ckpt file inside it, e.g."),
    "a text file for a checkpoint": (["export", "--ckpt_path={tmp}/notes.txt", "--output={tmp}/x"],
                                     "not a checkpoint (a text file)"),
    "an ONNX model for a checkpoint": (["predict", "--ckpt_path={tmp}/model.onnx", "--input={tmp}/notes.txt"],
                                       "an exported ONNX model: predict --model and serve --model take its folder"),
    "not this project's checkpoint": (["test", "{files}", *FIT, "--ckpt_path={tmp}/foreign.ckpt"], "foreign.ckpt"),
    "checkpoint of another vocabulary": (["test", "{other}", *FIT, "--ckpt_path={ckpt}"], "vocabulary"),
    "test without a checkpoint": (["test", "{files}", *FIT], "--ckpt_path best"),
    "no run to test or resume": (["test", "{files}", *FIT, "--ckpt_path=last"], "last.ckpt"),
    "fit from the best checkpoint": (["fit", "{files}", *FIT, "--ckpt_path=best"], "--ckpt_path last"),
    "resume with another model setting": (["fit", "{files}", *FIT, "--ckpt_path={ckpt}", "--model.hidden_size=16"],
                                          "--model.hidden_size 16"),
    "YAML key given twice": (["fit", "--config={tmp}/twice.yaml"], "appears twice"),
    # Rows 107, 108, 111 and 112 of the 2026-12-05 trial.
    "YAML merge key outside a section": (["fit", "--config={tmp}/merge.yaml"], "'x-common' is not a section"),
    "a word for a number": (["fit", "--trainer.max_epochs=one"], "--trainer.max_epochs is 'one'; fix: a whole number or null"),
    "a list for a section": (["fit", "--config={tmp}/list.yaml"], "model holds a list, not a mapping of settings"),
    "an empty config file": (["fit", "--config={tmp}/empty.yaml"], "empty.yaml is empty"),
    "flag before the config it loses to": (["fit", "--model.hidden_size=3", "--config={tmp}/sizes.yaml"],
                                           "comes before --config"),
    "flag and value quoted together": (["fit", "--data.batch_size 4"], "one argument"),
    "schedule without an end": (["fit", "{files}", *FIT, "--trainer.max_steps=-1", "--trainer.max_epochs=-1"],
                                "max_epochs -1"),
    "no training step": (["fit", "{files}", *FIT, "--trainer.max_steps=0"], "max_steps"),
    "empty predict input": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/empty.txt"], "no text"),
    "predict input not UTF-8": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/latin1.txt"], "UTF-8"),
    "predict input without the text column": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/rows.csv"],
                                              "--text_column"),
}


@pytest.fixture(scope="module")
def inputs(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad_input")
    files = write_splits(tmp, train=32, validation=8, test=8)
    other_rows = make_rows(32, seed=5)
    for row in other_rows:  # words the checkpoint's vocabulary never saw
        row["sentence"] = row["sentence"].replace("the", "zyx").replace("film", "qwv")
    other = {"train": write_rows(tmp / "other.csv", other_rows), "test": files["test"]}
    ckpt = best_checkpoint(tiny_run)
    (tmp / "typo.yaml").write_text("model:\n  hiden_size: 3\n")
    (tmp / "broken.yaml").write_text("model: [unclosed\n")
    (tmp / "twice.yaml").write_text("model:\n  hidden_size: 8\n  hidden_size: 16\n")
    (tmp / "merge.yaml").write_text("x-common: &common {hidden_size: 8}\nmodel:\n  <<: *common\n  num_layers: 1\n")
    (tmp / "list.yaml").write_text("model: [1, 2]\n")
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04")
    (tmp / "notes.txt").write_text("good film\n")
    (tmp / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    (tmp / "empty.yaml").write_text("")
    (tmp / "sizes.yaml").write_text("model:\n  hidden_size: 16\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp / "truncated.ckpt").write_bytes(Path(ckpt).read_bytes()[:4000])
    torch.save({"state_dict": {}}, tmp / "foreign.ckpt")
    write_rows(tmp / "rows.csv", make_rows(3, seed=1))
    return {"files": f"--data.data_files={files}", "other": f"--data.data_files={other}", "ckpt": ckpt,
            "tmp": str(tmp)}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_and_exit_code_2(case: str, inputs: dict[str, str], tmp_path: Path) -> None:
    template, names = CASES[case]
    args = [a.format(**inputs) for a in template]
    args = [a for a in args if a] + [f"--trainer.default_root_dir={tmp_path}"] * (args[0] in ("fit", "test"))
    code, err = run_cli(args)
    assert not assert_contract(code, err, tmp_path), "it was accepted"  # one line, exit 2, nothing half-written
    error = next(line for line in err.splitlines() if line.startswith("error:"))
    assert names in error and "usage:" not in err, err[-2000:]
    for ckpt in tmp_path.rglob("*.ckpt"):  # every checkpoint left is whole
        torch.load(ckpt, weights_only=False)


def test_the_troubleshooting_table_lists_every_case() -> None:
    table = (ROOT / "docs" / "troubleshooting.md").read_text()
    missing = [case for case in CASES if f"| {case} |" not in table]
    assert not missing, missing
