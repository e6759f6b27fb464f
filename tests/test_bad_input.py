"""The bad-input catalogue: wrong CLI flags, YAML, data, checkpoints and predict input. Each is
refused with exactly one ``error: ... fix: ...`` line on stderr, exit code 2 and no traceback.
The README's Troubleshooting table has a row for every case here (checked below)."""

from pathlib import Path

import pytest
import torch

from project.cli import main
from tests.conftest import make_rows, write_rows

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--data.text_column=sentence", "--data.min_frequency=1", "--data.batch_size=16",
        "--model.embedding_dim=8", "--model.hidden_size=8", "--trainer.max_steps=2",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

# case -> (arguments, with {files} {ckpt} {tmp} filled in; what the error line must name)
CASES = {
    "unknown cell type": (["fit", "--model.cell_type=lsmt"], "cell_type"),
    "misspelt flag": (["fit", "--model.hiden_size=3"], "hidden_size"),
    "text for a number": (["fit", "--model.hidden_size=abc"], "hidden_size"),
    "negative size": (["fit", "{files}", *TINY, "--model.hidden_size=-3"], "hidden_size"),
    "zero layers": (["fit", "{files}", *TINY, "--model.num_layers=0"], "num_layers"),
    "dropout of 1 or more": (["fit", "{files}", *TINY, "--model.embedding_dropout=1.5"], "embedding_dropout"),
    "learning rate not positive": (["fit", "{files}", *TINY, "--model.learning_rate=0"], "learning_rate"),
    "warm-up share out of range": (["fit", "{files}", *TINY, "--model.warmup=1.5"], "warmup"),
    "class weights of the wrong length": (["fit", "{files}", *TINY, "--model.class_weights=[1,2]"], "class_weights"),
    "batch size 0": (["fit", "{files}", *TINY, "--data.batch_size=0"], "batch_size"),
    "max length 0": (["fit", "{files}", *TINY, "--data.max_length=0"], "max_length"),
    "train fraction 0": (["fit", "{files}", *TINY, "--data.train_fraction=0"], "train_fraction"),
    "unknown tokenizer": (["fit", "{files}", *TINY, "--data.tokenizer=sentencepiece"], "tokenizer"),
    "unknown subcommand": (["trian"], "trian"),
    "missing config file": (["fit", "--config={tmp}/nope.yaml"], "nope.yaml"),
    "misspelt key in YAML": (["fit", "--config={tmp}/typo.yaml"], "hiden_size"),
    "YAML that does not parse": (["fit", "--config={tmp}/broken.yaml"], "broken.yaml"),
    "missing data file": (["fit", "--data.data_files={{train: {tmp}/none.csv}}", *TINY], "none.csv"),
    "missing text column": (["fit", "{files}", *TINY[1:]], "'text'"),
    "missing label column": (["fit", "{files}", *TINY, "--data.label_column=sentiment"], "sentiment"),
    "empty training file": (["fit", "--data.data_files={{train: {tmp}/empty.csv}}", *TINY], "empty"),
    "no accelerator of that kind": (["fit", "{files}", *TINY, "--trainer.accelerator=cuda"], "CUDA"),
    "loss that is not finite": (["fit", "{files}", *TINY, "--model.learning_rate=1e30",
                                 "--trainer.max_steps=30"], "learning_rate"),
    "missing checkpoint": (["test", "{files}", *TINY, "--ckpt_path={tmp}/none.ckpt"], "none.ckpt"),
    "truncated checkpoint": (["test", "{files}", *TINY, "--ckpt_path={tmp}/truncated.ckpt"], "truncated.ckpt"),
    "not this project's checkpoint": (["test", "{files}", *TINY, "--ckpt_path={tmp}/foreign.ckpt"], "foreign.ckpt"),
    "checkpoint of another vocabulary": (["test", "{other}", *TINY, "--ckpt_path={ckpt}"], "vocabulary"),
    "test without a checkpoint": (["test", "{files}", *TINY], "--ckpt_path best"),
    "no run to test or resume": (["test", "{files}", *TINY, "--ckpt_path=last"], "last.ckpt"),
    "fit from the best checkpoint": (["fit", "{files}", *TINY, "--ckpt_path=best"], "--ckpt_path last"),
    "resume with another model setting": (["fit", "{files}", *TINY, "--ckpt_path={ckpt}", "--model.hidden_size=16"],
                                          "--model.hidden_size 16"),
    "YAML key given twice": (["fit", "--config={tmp}/twice.yaml"], "appears twice"),
    "flag before the config it loses to": (["fit", "--model.hidden_size=3", "--config={tmp}/sizes.yaml"],
                                           "comes before --config"),
    "flag and value quoted together": (["fit", "--data.batch_size 4"], "one argument"),
    "schedule without an end": (["fit", "{files}", *TINY, "--trainer.max_steps=-1", "--trainer.max_epochs=-1"],
                                "max_epochs -1"),
    "no training step": (["fit", "{files}", *TINY, "--trainer.max_steps=0"], "max_steps"),
    "empty predict input": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/empty.txt"], "no text"),
    "predict input not UTF-8": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/latin1.txt"], "UTF-8"),
    "predict input without the text column": (["predict", "--ckpt_path={ckpt}", "--input={tmp}/rows.csv"],
                                              "--text_column"),
}


@pytest.fixture(scope="module")
def inputs(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad_input")
    files = {split: write_rows(tmp / f"{split}.csv", make_rows(n, seed))
             for split, n, seed in (("train", 32, 1), ("validation", 8, 2), ("test", 8, 3))}
    other_rows = make_rows(32, seed=5)
    for row in other_rows:  # words the checkpoint's vocabulary never saw
        row["sentence"] = row["sentence"].replace("the", "zyx").replace("film", "qwv")
    other = {"train": write_rows(tmp / "other.csv", other_rows), "test": files["test"]}
    ckpt = tiny_run.trainer.checkpoint_callback.best_model_path
    (tmp / "typo.yaml").write_text("model:\n  hiden_size: 3\n")
    (tmp / "broken.yaml").write_text("model: [unclosed\n")
    (tmp / "twice.yaml").write_text("model:\n  hidden_size: 8\n  hidden_size: 16\n")
    (tmp / "sizes.yaml").write_text("model:\n  hidden_size: 16\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp / "truncated.ckpt").write_bytes(Path(ckpt).read_bytes()[:4000])
    torch.save({"state_dict": {}}, tmp / "foreign.ckpt")
    write_rows(tmp / "rows.csv", make_rows(3, seed=1))
    return {"files": f"--data.data_files={files}", "other": f"--data.data_files={other}", "ckpt": ckpt,
            "tmp": str(tmp)}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_and_exit_code_2(case: str, inputs: dict[str, str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    template, names = CASES[case]
    args = [a.format(**inputs) for a in template]
    args = [a for a in args if a] + [f"--trainer.default_root_dir={tmp_path}"] * (args[0] in ("fit", "test"))
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2, err[-2000:]
    assert len(errors) == 1 and "fix:" in errors[0] and names in errors[0], err[-2000:]
    assert "Traceback" not in err and "usage:" not in err
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written: every checkpoint there is whole
    for ckpt in tmp_path.rglob("*.ckpt"):
        torch.load(ckpt, weights_only=False)


def test_the_readme_troubleshooting_table_lists_every_case() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Troubleshooting"):]
    missing = [case for case in CASES if f"| {case} |" not in table]
    assert not missing, missing
