"""Rows held in Python (``TextDataModule.from_frame``): a pandas DataFrame or a list of dicts
trains with a plain ``lightning.Trainer``, goes through the checks files go through, keys the
cache on its content, and is named in the run folder; the rows never enter a checkpoint."""

import re
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from project.data.datamodule import TextDataModule
from project.errors import UserError
from project.model.classifier import TextClassifier
from project.training.runs import data_name
from tests.helpers import make_rows, write_rows


def reviews(n: int = 60, seed: int = 1) -> pd.DataFrame:
    """``make_rows`` as a notebook would hold them: other column names, a non-default index."""
    frame = pd.DataFrame(make_rows(n, seed)).rename(columns={"sentence": "review", "label": "stars"})
    return frame.set_index(pd.RangeIndex(100, 100 + n))


def fit(dm: TextDataModule, root: Path) -> tuple[L.Trainer, TextClassifier]:
    """A tiny real fit: two steps, the smallest model, nothing logged."""
    model = TextClassifier(vocab_size=dm.vocab_size, label_names=dm.label_names, embedding_dim=8, hidden_size=8)
    trainer = L.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", default_root_dir=str(root))
    trainer.fit(model, dm)
    return trainer, model


def test_a_dataframe_trains_and_its_checkpoint_holds_no_rows(tmp_path: Path) -> None:
    dm = TextDataModule.from_frame(reviews(), text_column="review", label_column="stars", name="reviews",
                                   min_frequency=1, batch_size=16, cache_dir=str(tmp_path / "cache"))
    assert dm.label_names == ["neg", "neu", "pos"]
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 54, "validation": 6}  # carved, stratified
    trainer, _ = fit(dm, tmp_path)
    assert trainer.global_step == 2
    ckpt = tmp_path / "frame.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)  # plain values only: a pickled DataFrame would refuse
    assert saved["datamodule_hyper_parameters"]["frame"] == "reviews"
    assert "frame_rows" not in saved["datamodule_hyper_parameters"]
    assert TextClassifier.load_from_checkpoint(ckpt).hparams.label_names == dm.label_names
    again = TextDataModule.from_frame(reviews(), text_column="review", label_column="stars", name="reviews",
                                      min_frequency=1, batch_size=16, cache_dir=str(tmp_path / "cache"))
    again.load_state_dict(saved["TextDataModule"])  # what fit --ckpt_path does: same vocabulary and labels
    assert again.cache_hit and again.resume_at == saved["TextDataModule"]["train_progress"]


def test_a_list_of_dicts_trains_with_its_own_validation_and_test(tmp_path: Path) -> None:
    dm = TextDataModule.from_frame(make_rows(45, 1), text_column="sentence", validation_frame=make_rows(9, 2),
                                   test_frame=make_rows(9, 3), min_frequency=1, batch_size=16,
                                   cache_dir=str(tmp_path / "cache"))
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 45, "validation": 9, "test": 9}
    trainer, model = fit(dm, tmp_path)
    assert trainer.global_step == 2
    assert trainer.test(model, dm, verbose=False)[0]["test/acc"] >= 0


def one_class(rows: list[dict]) -> list[dict]:
    return [{**row, "label": "pos"} for row in rows]


@pytest.mark.parametrize(("bad", "settings"), [
    (lambda rows: rows, {"text_column": "review"}),  # no such column
    (lambda rows: [], {}),  # no rows
    (one_class, {}),
])
def test_a_bad_frame_is_refused_as_the_same_file_would_be(tmp_path: Path, bad, settings: dict) -> None:
    rows = bad(make_rows(30, 1))
    file = tmp_path / "train.csv"
    if rows:
        write_rows(file, rows)
    else:
        file.write_text("sentence,label\n")  # a header and no rows
    settings = {"text_column": "sentence", "cache_dir": str(tmp_path / "cache"), **settings}
    with pytest.raises(UserError) as from_file:
        TextDataModule(data_files={"train": str(file)}, **settings).dataset  # noqa: B018
    for given in (rows, pd.DataFrame(rows, columns=["sentence", "label"])):
        with pytest.raises(UserError) as from_frame:
            TextDataModule.from_frame(given, **settings).dataset  # noqa: B018
        assert str(from_frame.value) == str(from_file.value).replace(str(file), "frame")
        assert "\n" not in str(from_frame.value) and "; fix: " in str(from_frame.value)


def test_a_bad_row_is_named_as_python_finds_it(tmp_path: Path) -> None:
    frame = reviews()
    frame.loc[107, "review"] = " "
    with pytest.raises(UserError, match=r"^frame\.loc\[107\]: 'review' is empty; fix: "):
        TextDataModule.from_frame(frame, text_column="review", label_column="stars").dataset  # noqa: B018
    rows = make_rows(30, 1)
    rows[4]["sentence"] = None
    with pytest.raises(UserError, match=r"^validation_frame\[4\]: 'sentence' is missing; fix: "):
        TextDataModule.from_frame(make_rows(30, 2), text_column="sentence", validation_frame=rows).dataset  # noqa: B018


def test_a_column_of_mixed_types_is_refused_in_one_line() -> None:
    rows = make_rows(30, 1)
    rows[3]["label"] = 3  # among names
    for given in (rows, pd.DataFrame(rows)):
        with pytest.raises(UserError, match=r"^frame cannot be made a table \(.*int.*\); fix: give each column "):
            TextDataModule.from_frame(given, text_column="sentence").dataset  # noqa: B018


@pytest.mark.parametrize(("given", "says"), [
    ({"frame": "reviews.csv"}, "frame is a str; fix: give a pandas DataFrame or a list of dicts"),
    ({"frame": [("good", "pos")]}, "frame is a list; fix:"),
    ({"path": "imdb"}, "from_frame takes its rows from the frames, not from path; fix: leave path out"),
    ({"name": "?!"}, "name='?!' holds no letter or digit to name the data by; fix:"),
    ({"name": None}, "name=None holds no letter or digit to name the data by; fix:"),
])
def test_what_is_no_frame_is_refused_at_once(given: dict, says: str) -> None:
    with pytest.raises(UserError, match=f"^{re.escape(says)}"):
        TextDataModule.from_frame(**{"frame": make_rows(6, 1), "text_column": "sentence", **given})


def test_the_cache_identity_is_the_rows_content(tmp_path: Path) -> None:
    def identity(frame: pd.DataFrame | list, **settings) -> object:
        dm = TextDataModule.from_frame(frame, text_column="review", label_column="stars", **settings)
        return dm.source.identity()

    first = identity(reviews())
    assert identity(reviews(), name="other") == first  # equal rows, another object and name: one entry
    assert identity(reviews(seed=2)) != first  # other rows
    changed = reviews()
    changed.loc[100, "review"] += " again"
    assert identity(changed) != first  # one text changed
    assert identity(reviews().to_dict("records")) == identity(reviews().to_dict("records")) != first
    assert identity(reviews(), validation_frame=reviews(9, 2)) != first  # a split more
    # Through the real cache: equal rows hit it, changed rows make a second entry.
    cache = tmp_path / "cache"
    built = [TextDataModule.from_frame(frame, text_column="review", label_column="stars", cache_dir=str(cache))
             for frame in (reviews(), reviews(), changed)]
    assert [dm.dataset is not None and dm.cache_hit for dm in built] == [False, True, False]
    assert len(list(cache.iterdir())) == 2


def test_a_frame_is_named_in_the_run_folder_and_the_card() -> None:
    dm = TextDataModule.from_frame(reviews(), text_column="review", label_column="stars", name="Shop Reviews")
    assert data_name(dm.hparams) == dm.source.name == "shop_reviews"
    assert dm.source.description == "rows given to `TextDataModule.from_frame`" and dm.source.hub_id is None
    plain = TextDataModule.from_frame(make_rows(6, 1), text_column="sentence")
    assert data_name(plain.hparams) == "frame"  # the default name
    assert data_name({"frame": "reviews"}) == "reviews"  # what a checkpoint's hparams say, without the rows
