"""``pretrain`` and ``fit --model.init_from`` (issue 30): the language model's data (windows that
cover every token once, unlabelled files of each kind, one-line refusals), the model (no state
sees the token it predicts; both softmaxes), the fine-tuning knobs (discriminative rates,
gradual unfreezing), and real runs: a pretrain, a classifier started from it, a pretrain
stopped anywhere and resumed bit-identical, and generated flags and files that keep the
contract."""

import json
import signal
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from project import tags
from project.data.unlabeled import LanguageModelData, load_unlabeled
from project.errors import UserError
from project.model.classifier import TextClassifier
from project.model.language_model import LanguageModel, cutoffs
from project.model.pretrained import load_pretrained
from tests.helpers import TINY, ForkServer, assert_contract, examples, last_checkpoint, make_rows, refused, \
    run_cli, write_rows, write_splits

LM_TINY = ["--data.min_frequency=1", "--model.embedding_dim=8", "--model.hidden_size=8",
           "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def lm_data(folder: Path, **settings) -> LanguageModelData:  # noqa: ANN003 - the DataModule's arguments
    folder.mkdir(parents=True, exist_ok=True)
    files = write_splits(folder, test=0)
    return LanguageModelData(data_files=files, text_column="sentence", min_frequency=1, cache_dir=str(folder / "cache"),
                             **settings)


# --- the data ---


def test_windows_cover_every_token_of_every_text_once(tmp_path: Path) -> None:
    data = lm_data(tmp_path, bptt=4, batch_size=4)
    tokenizer = data.tokenizer
    tokenizer.no_truncation()
    texts = [row["sentence"] for row in make_rows(60, seed=1)]
    expected = [tokenizer.encode(text).ids for text in texts]
    windows = data.dataset["train"].data.column("input_ids").to_pylist()
    rebuilt, i = [], 0
    for ids in expected:  # each text's windows in order, overlapping by one token
        stream = list(windows[i])
        i += 1
        while len(stream) < len(ids):
            assert windows[i][0] == stream[-1]
            stream += windows[i][1:]
            i += 1
        rebuilt.append(stream)
    assert i == len(windows) and rebuilt == expected
    assert max(len(w) for w in windows) == 5  # bptt + 1: bptt targets per direction
    assert data.label_names == [] and data.num_tokens == sum(len(w) for w in windows)


def test_unlabeled_files_of_every_kind_join_the_training_text(tmp_path: Path) -> None:
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    (tmp_path / "folder" / "sub" / "a.txt").write_text("zebra quagga okapi")
    (tmp_path / "folder" / ".hidden.txt").write_text("hidden")
    (tmp_path / "one.txt").write_text("narwhal")
    write_rows(tmp_path / "more.csv", [{"body": "axolotl tapir", "x": 1}, {"body": "", "x": 2}])
    write_rows(tmp_path / "more.jsonl", [{"body": "pangolin"}])
    write_rows(tmp_path / "more.parquet", [{"body": "wombat"}])
    texts = load_unlabeled([str(tmp_path / "folder"), str(tmp_path / "one.txt"), str(tmp_path / "more.*")], "body")
    assert texts["text"] == ["zebra quagga okapi", "narwhal", "axolotl tapir", "pangolin", "wombat"]
    data = lm_data(tmp_path / "d", unlabeled_files=[str(tmp_path / "one.txt"), str(tmp_path / "more.csv")],
                   unlabeled_text_column="body")
    vocab = data.tokenizer.get_vocab()
    assert {"narwhal", "axolotl", "tapir"} <= set(vocab)  # the tokenizer learned the unlabelled words too
    assert "zebra" not in vocab


@pytest.mark.parametrize(("make", "says"), [
    (lambda tmp: [str(tmp / "missing.txt")], "no such file"),
    (lambda tmp: [str(tmp / "nothing*.csv")], "no such file"),
    (lambda tmp: [str((tmp / "empty").mkdir() or tmp / "empty")], "without .txt files"),
    (lambda tmp: [write_rows(tmp / "x.csv", [{"other": "a"}])], "no column 'body'"),
    (lambda tmp: [str((tmp / "b.txt").write_bytes(b"\0\1\2") and tmp / "b.txt")], "binary"),
    (lambda tmp: [str((tmp / "x.docx").write_text("a") and tmp / "x.docx")], "unknown file extension"),
])
def test_bad_unlabeled_files_are_refused_in_one_line(tmp_path: Path, make, says: str) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=says) as error:
        load_unlabeled(make(tmp_path), "body")
    assert "fix:" in str(error.value) and "\n" not in str(error.value)


# --- the model ---


@pytest.mark.parametrize("softmax", ["adaptive", "full"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_language_model_learns_a_sequence_with_either_softmax(softmax: str, bidirectional: bool) -> None:
    model = LanguageModel(vocab_size=30, embedding_dim=16, hidden_size=16, num_layers=2, bidirectional=bidirectional,
                          softmax=softmax, drop_mult=0.0)
    ids = torch.arange(2, 22).repeat(4, 1)  # 2, 3, ..., 21: each token names the next and the previous
    lengths = torch.full((4,), 20)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(ids, lengths)[0].item()
    for _ in range(150):
        optimizer.zero_grad()
        loss, targets = model(ids, lengths)
        loss.backward()
        optimizer.step()
    assert targets == 4 * 19 and loss.item() < 0.2 * first


def test_adaptive_clusters_fit_any_vocabulary() -> None:
    assert cutoffs(20000) == [2000, 10000]
    assert cutoffs(3) == [1]
    for vocab in range(3, 200):
        LanguageModel(vocab_size=vocab, embedding_dim=4, hidden_size=4)  # torch checks the cutoffs


def test_init_from_copies_the_embedding_and_encoder_and_checks_them(tmp_path: Path) -> None:
    data = lm_data(tmp_path)
    code, err = run_cli(["pretrain", f"--data.data_files={write_splits(tmp_path, test=0)}", "--data.text_column=sentence",
                         f"--data.cache_dir={tmp_path / 'cache'}", *LM_TINY, "--trainer.max_steps=2",
                         f"--trainer.default_root_dir={tmp_path}", "--model.num_layers=2"])
    assert code == 0, err
    run = next((tmp_path / "lightning_logs").glob("*-lm-version_0"))
    saved = torch.load(next(run.glob("checkpoints/last.ckpt")), weights_only=True)["state_dict"]
    model = TextClassifier(vocab_size=data.vocab_size, label_names=["a", "b"], embedding_dim=8, hidden_size=8,
                           num_layers=2, init_from=str(run))
    assert model.encoder.separate  # a forward and a backward stack, as the language model's
    load_pretrained(model, str(run), data.tokenizer)
    ours = model.state_dict()
    copied = [k for k in saved if k.startswith(("embedding.", "encoder."))]
    assert len(copied) == 1 + 2 * 2 * 4 and all(torch.equal(ours[k], saved[k]) for k in copied)
    with pytest.raises(UserError, match="hidden_size 16"):
        load_pretrained(TextClassifier(vocab_size=data.vocab_size, label_names=["a", "b"], embedding_dim=8,
                                       hidden_size=16, num_layers=2, init_from=str(run)), str(run), data.tokenizer)
    other = lm_data(tmp_path / "other", lowercase=False)
    with pytest.raises(UserError, match="tokenizer is not the language model's"):
        load_pretrained(model, str(run), other.tokenizer)


# --- fine-tuning ---


def test_discriminative_rates_divide_by_the_decay_per_layer_down() -> None:
    model = TextClassifier(vocab_size=20, label_names=["a", "b"], num_layers=2, learning_rate=0.01, layer_lr_decay=2.0,
                           pooling="attention")
    groups = model.parameter_groups()
    assert [g["lr"] for g in groups] == [0.01 / 8, 0.01 / 4, 0.01 / 2, 0.01]  # embedding, layer 0, 1, head
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    one_rate = TextClassifier(vocab_size=20, label_names=["a", "b"], num_layers=2, learning_rate=0.01)
    assert [len(g["params"]) for g in one_rate.parameter_groups()] == [len(list(one_rate.parameters()))]


def test_the_head_is_batch_normalized_for_a_pretrained_start_and_takes_one_text_batches() -> None:
    assert isinstance(TextClassifier(vocab_size=20, label_names=["a", "b"]).head_norm, torch.nn.Identity)
    model = TextClassifier(vocab_size=20, label_names=["a", "b"], embedding_dim=4, hidden_size=4, init_from="run")
    assert isinstance(model.head_norm, torch.nn.BatchNorm1d)
    assert isinstance(TextClassifier(vocab_size=20, label_names=["a", "b"], init_from="run", head_norm=False).head_norm,
                      torch.nn.Identity)
    model.train()
    ids, lengths = torch.randint(1, 20, (3, 5)), torch.tensor([5, 3, 2])
    model(ids, lengths)
    stats = model.head_norm.running_mean.clone()
    assert stats.abs().sum() > 0  # a batch of three moved the running statistics
    one = model(ids[:1], lengths[:1])  # torch's BatchNorm1d raises on one text in training
    assert torch.equal(model.head_norm.running_mean, stats) and one.isfinite().all()
    assert "head_norm" in {group for group, _ in model.named_children()}
    assert set(model.layer_groups()[-1]) >= set(model.head_norm.parameters())


def test_gradual_unfreezing_trains_one_more_group_each_epoch(tmp_path: Path) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from project.data.datamodule import TextDataModule

    data = TextDataModule(data_files=write_splits(tmp_path), text_column="sentence", min_frequency=1, batch_size=30,
                          cache_dir=str(tmp_path / "cache"))
    model = TextClassifier(vocab_size=data.vocab_size, label_names=data.label_names, embedding_dim=8, hidden_size=8,
                           num_layers=2, gradual_unfreezing=True)
    seen, moved = [], []

    class Watch(Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            seen.append([all(p.requires_grad for p in group) for group in module.layer_groups()])
            self.before = [p.detach().clone() for p in module.parameters()]

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            moved.append([not torch.equal(a, b) for a, b in zip(self.before, module.parameters(), strict=True)])

    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Watch()], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    # Watch runs before the model's hook in each epoch: what it sees is the previous epoch's choice.
    assert seen[1:] == [[False, False, False, True], [False, False, True, True], [False, True, True, True]]
    assert moved[0][0] is False and any(moved[0])  # epoch 0: the head alone moved, not the embedding
    assert all(moved[3])


# --- real runs ---


@pytest.mark.slow  # a real pretrain and fit
def test_pretrain_then_fit_from_it(tmp_path: Path) -> None:
    files = write_splits(tmp_path)
    (tmp_path / "more.txt").write_text("great film " * 50)
    data = [f"--data.data_files={files}", "--data.text_column=sentence", f"--data.cache_dir={tmp_path / 'cache'}"]
    code, err = run_cli(["pretrain", *data, *LM_TINY, f"--data.unlabeled_files=[{tmp_path / 'more.txt'}]",
                         "--model.cell_type=gru", "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}"])
    assert code == 0, err
    run = tmp_path / "lightning_logs" / f"{tmp_path.name.lower()}-gru-lm-version_0"
    assert run.is_dir(), list((tmp_path / "lightning_logs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["best"]["val/perplexity"] > 1
    assert metrics["best_checkpoint"].startswith("checkpoints/best-epoch=")
    card = (run / "model_card.md").read_text()
    assert f"`python -m project fit --model.init_from {run.name}`" in card and "pipeline_tag: text-generation" in card
    perplexity = f"{metrics['best']['val/perplexity']:.4g}"
    assert f"| validation (epoch 1, step {metrics['best']['step']}) | " in card and perplexity in card
    assert "| bptt | 70 |" in card and "more.txt |" in card.split("| unlabeled_files | ")[1].split("\n")[0]
    assert f"`{metrics['best_checkpoint']}` (the kept checkpoint)" in card and "| trainable parameters | –" not in card
    from tests.helpers import scalars

    assert "val/perplexity" in scalars(run)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    samples = events.Tensors(f"{tags.SAMPLES}/text_summary")
    assert len(samples) == 2 and samples[-1].tensor_proto.string_val[0].decode().count("**") == 6  # 3 prompts
    code, err = run_cli(["fit", *data, f"--model.init_from={run}", "--trainer.max_steps=4",
                         "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    assert code == 0, err
    fitted = tmp_path / "lightning_logs" / f"{tmp_path.name.lower()}-gru-version_1"
    config = yaml.safe_load((fitted / "config.yaml").read_text())
    assert config["model"]["cell_type"] == "gru" and config["model"]["hidden_size"] == 8  # the language model's
    assert config["data"]["tokenizer"] == str(run / "tokenizer.json")
    state = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert "head_norm.running_mean" in state  # head_norm: null is on for a pretrained start
    assert json.loads((fitted / "metrics.json").read_text())["test"]["test/acc"] is not None
    refused(["fit", *data, f"--model.init_from={run}", "--model.hidden_size=16", "--trainer.max_steps=1"], tmp_path,
            "--model.hidden_size 16", "fix:")
    refused(["fit", *data, f"--model.init_from={run}", "--data.tokenizer=bpe", "--trainer.max_steps=1"], tmp_path,
            "--data.tokenizer bpe", "fix:")
    classifier = next(fitted.glob("checkpoints/last.ckpt"))
    refused(["fit", *data, f"--model.init_from={classifier}"], tmp_path, "a classifier's checkpoint", "fix:")
    refused(["fit", *data, f"--model.init_from={tmp_path / 'nothing'}"], tmp_path, "no such file", "fix:")
    refused(["pretrain", *data, f"--ckpt_path={classifier}"], tmp_path, "a classifier's checkpoint", "fix:")
    language_model = run / "checkpoints" / "last.ckpt"
    refused(["test", *data, f"--ckpt_path={language_model}"], tmp_path, "a language model's checkpoint",
            "fit --model.init_from")
    (tmp_path / "texts.txt").write_text("a fine film\n")
    refused(["predict", f"--ckpt_path={language_model}", f"--input={tmp_path / 'texts.txt'}"], tmp_path,
            "a language model's checkpoint", "fit --model.init_from")
    code, err = run_cli(["pretrain", *data, *LM_TINY, f"--data.unlabeled_files=[{tmp_path / 'more.txt'}]",
                         "--model.cell_type=gru", "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}",
                         "--ckpt_path=last"])  # the language model's last.ckpt (not the newer classifier's): done
    assert code == 0, err
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2  # its own folder, nothing run twice
    assert (run / "model_card.md").read_text() == card


@pytest.fixture(scope="module")
def resume_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pretrain-resume")
    files = write_splits(tmp, train=40, test=0)
    config = tmp / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"data_files": files, "text_column": "sentence", "min_frequency": 1, "batch_size": 8, "bptt": 8,
                 "cache_dir": str(tmp / "cache")},
        "model": {"embedding_dim": 8, "hidden_size": 8, "num_layers": 2},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "enable_model_summary": False},
        "seed_everything": 5,
    }))
    return config


@pytest.mark.slow
@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(step=st.integers(1, 20), send=st.sampled_from(["SIGKILL", "SIGTERM"]), every=st.sampled_from([1, 3, 500]))
# A graceful stop mid-epoch, and a kill after some last.ckpt writes: both go on with --ckpt_path last.
@example(step=5, send="SIGTERM", every=500)
@example(step=7, send="SIGKILL", every=3)
def test_a_pretrain_stopped_anywhere_resumes_bit_identical(step: int, send: str, every: int, fork_server: ForkServer,
                                                           resume_config: Path,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("stop")
    reference = resume_config.parent / "reference"
    if not reference.is_dir():
        code, output = fork_server.run("pretrain", f"--config={resume_config}", f"--trainer.default_root_dir={reference}")
        assert code == 0, output[-3000:]
    weights, steps = last_checkpoint(reference)
    step = min(step, steps)
    args = [f"--config={resume_config}", f"--trainer.default_root_dir={tmp}", f"--last_checkpoint.every_n_train_steps={every}"]
    code, output = fork_server.run("pretrain", *args, "--trainer.callbacks+=tests.killer.KillAtStep",
                                   f"--trainer.callbacks.step={step}", f"--trainer.callbacks.send={send}")
    assert "Traceback" not in output, output[-3000:]
    assert code in ((-signal.SIGKILL, 0) if send == "SIGKILL" else (128 + signal.SIGTERM,)), output[-3000:]
    resumed_from_checkpoint = False
    if code != 0:
        if not list(tmp.glob("lightning_logs/*/checkpoints/last.ckpt")):  # killed before its first checkpoint
            tmp = tmp / "again"
            args[1] = f"--trainer.default_root_dir={tmp}"
            code, output = fork_server.run("pretrain", *args)
        else:
            code, output = fork_server.run("pretrain", *args, "--ckpt_path=last")
            resumed_from_checkpoint = True
        assert code == 0, output[-3000:]
    if (step, send, every) in ((5, "SIGTERM", 500), (7, "SIGKILL", 3)):
        assert resumed_from_checkpoint  # the examples above stop mid-run with a last.ckpt to go on from
    resumed, resumed_steps = last_checkpoint(tmp)
    assert resumed_steps == steps and set(resumed) == set(weights)
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)  # bit-identical on CPU


FLAG_VALUES = {
    "--model.cell_type": st.sampled_from(["rnn", "lstm", "gru", "transformer"]),
    "--model.num_layers": st.integers(-1, 3),
    "--model.bidirectional": st.booleans(),
    "--model.embedding_dropout": st.floats(-0.5, 1.5),
    "--model.weight_drop": st.floats(-0.5, 1.5),
    "--model.output_dropout": st.floats(0, 0.99),
    "--model.drop_mult": st.floats(-1, 5),
    "--model.softmax": st.sampled_from(["adaptive", "full", "sampled"]),
    "--model.learning_rate": st.floats(-1, 1),
    "--data.bptt": st.integers(-2, 100),
    "--data.batch_size": st.integers(0, 64),
    "--data.max_vocab_size": st.integers(0, 50),
    "--samples.count": st.integers(-1, 3),
}


@pytest.mark.slow
@settings(max_examples=examples(6), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({k: FLAG_VALUES[k] for k in chosen})),
    unlabeled=st.lists(st.sampled_from(["txt", "csv", "empty.csv", "binary.txt", "missing.txt", "folder"]), max_size=2))
def test_generated_pretrain_flags_and_files_keep_the_contract(flags: dict, unlabeled: list[str], tmp_path: Path) -> None:
    files = {"txt": lambda p: (p.write_text("a great film indeed"), p),
             "csv": lambda p: (write_rows(p, [{"text": "what a dull film"}]), p),
             "empty.csv": lambda p: (p.write_text("text\n"), p),
             "binary.txt": lambda p: (p.write_bytes(b"\0PK\3\4"), p),
             "missing.txt": lambda p: (None, p),
             "folder": lambda p: (p.mkdir(exist_ok=True), (p / "a.txt").write_text("fine"), p)}
    paths = [str(files[kind](tmp_path / kind)[-1]) for kind in unlabeled]
    args = ["pretrain", f"--data.data_files={write_splits(tmp_path, train=30, validation=10, test=0)}",
            "--data.text_column=sentence", f"--data.cache_dir={tmp_path / 'cache'}", *TINY, "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path / 'runs'}",
            *(f"{k}={v}" for k, v in flags.items()), *([f"--data.unlabeled_files={paths}"] if paths else [])]
    code, err = run_cli(args)
    assert_contract(code, err, tmp_path)


@pytest.mark.parametrize("model", ["fit", "pretrain"])
def test_lr_find_prints_a_rate_and_plots_the_curve_for_fit_and_pretrain(model: str, tmp_path: Path, capsys) -> None:
    files = write_splits(tmp_path, test=0)
    code, err = run_cli(["lr_find", model, f"--data.data_files={files}", "--data.text_column=sentence",
                         f"--data.cache_dir={tmp_path / 'cache'}", *TINY, "--num_training=12", "--data.batch_size=8",
                         f"--trainer.default_root_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0, err[-3000:]
    plot = tmp_path / "lr_find" / f"{tmp_path.name.lower()}-lstm{'-lm' if model == 'pretrain' else ''}.png"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert ("Suggested learning rate: " in out or "No learning rate suggested" in out) and str(plot) in out
    assert not (tmp_path / "lightning_logs").exists()  # a search, not a run
    assert not list(tmp_path.glob(".lr_find*"))  # Lightning's restore point is gone


@pytest.mark.slow
def test_compare_and_tune_start_from_language_models(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # compare's children: never the user's cache
    files = write_splits(tmp_path)
    data = [f"--data.data_files={files}", "--data.text_column=sentence", f"--data.cache_dir={tmp_path / 'cache'}"]
    runs = {}
    for cell in ("lstm", "gru"):
        code, err = run_cli(["pretrain", *data, *LM_TINY, f"--model.cell_type={cell}", "--trainer.max_epochs=1",
                             f"--trainer.default_root_dir={tmp_path}"])
        assert code == 0, err
        runs[cell] = str(next((tmp_path / "lightning_logs").glob(f"*-{cell}-lm-version_*")))
    out = tmp_path / "compare"
    from project.commands.compare import pretrained_starts

    # Each cell from its own language model, matched by the cell its checkpoint holds, whatever the order.
    assert pretrained_starts([runs["lstm"], runs["gru"]], ["gru", "lstm"]) == {"gru": runs["gru"], "lstm": runs["lstm"]}
    code, err = run_cli(["compare", "--cell_types=gru", "--seeds=1", f"--pretrained={runs['lstm']},{runs['gru']}",
                         f"--output_dir={out}", *data, "--trainer.max_steps=2"])  # one run: a child process each
    assert code == 0, err
    config = yaml.safe_load(next((out / "runs" / "gru-seed1").glob("**/config.yaml")).read_text())
    assert config["model"]["init_from"] == runs["gru"] and config["model"]["hidden_size"] == 8
    assert f"gru from {runs['gru']}" in (out / "compare.md").read_text()
    refused(["compare", "--cell_types=lstm,gru", "--seeds=1", f"--pretrained={runs['lstm']}", f"--output_dir={out}2",
             *data], tmp_path, "no gru language model", "fix: python -m project pretrain --model.cell_type gru")
    refused(["compare", "--cell_types=lstm", f"--model.init_from={runs['lstm']}", f"--output_dir={out}3", *data],
            tmp_path, "fix: --pretrained")
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # row 71 of the 2026-12-05 trial: the default space was found from the repository only
    code, err = run_cli(["tune", f"--model.init_from={runs['gru']}", *data, "--n_trials=1", "--trainer.max_steps=2",
                         f"--trainer.default_root_dir={tmp_path / 't'}"])  # the default space, from another folder
    assert code == 0, err
    said = capsys.readouterr().out
    assert "--model.init_from fixes model.num_layers, model.hidden_size, model.embedding_dim, model.cell_type" in said
    trial = yaml.safe_load(next((tmp_path / "t").glob("tune/**/config.yaml")).read_text())
    assert trial["model"]["init_from"] == runs["gru"] and trial["model"]["cell_type"] == "gru"
