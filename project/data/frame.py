"""Rows held in Python as a source: a pandas DataFrame or a list of dicts per split, given to
``TextDataModule.from_frame`` (a notebook's data, with no file written). ``datasets`` turns them
into Arrow tables; from there they are checked, split and tokenized as files are.

The rows are no hyperparameter (a checkpoint would carry the whole table): the DataModule's
hparams hold the frame's name, which the run folder and the model card use, and the rows reach
``sources.pick`` beside them. The tokenized cache keys on the tables' content (the fingerprint
``datasets`` computes when it builds a table from rows), so a changed frame makes a new entry and
two different frames never share one.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import pyarrow as pa
from datasets import Dataset

from project import compat
from project.data.files import Loaded, Part, folder_name
from project.errors import UserError

Rows = pd.DataFrame | list[dict[str, Any]]
# The from_frame argument that holds each split: what a message calls it.
ARGUMENTS = {"train": "frame", "validation": "validation_frame", "test": "test_frame"}


def _part(rows: Rows, argument: str) -> Part:
    """One split's rows as a table; a row is named as Python finds it (``frame.loc[17]``)."""
    try:
        if isinstance(rows, pd.DataFrame):
            dataset = Dataset.from_pandas(rows, preserve_index=False)  # the index is no column
        else:
            dataset = Dataset.from_list(rows)
    except (pa.ArrowException, ValueError, TypeError) as error:
        reason = ", ".join(str(part) for part in error.args) or type(error).__name__  # pandas' has two parts
        raise UserError(f"{argument} cannot be made a table ({reason}); fix: give each column values of "
                        f"one type (texts, or integer or name labels)") from None
    if isinstance(rows, pd.DataFrame):
        index = rows.index
        return Part(dataset, argument, lambda row: f"{argument}.loc[{index[row:row + 1].tolist()[0]!r}]")
    return Part(dataset, argument, lambda row: f"{argument}[{row}]")


@dataclass
class Frame:
    """Rows given from Python (``TextDataModule.from_frame``): a split per from_frame argument."""

    name: str
    rows: dict[str, Rows] | None  # per split; None where the source is only named (runs.data_name)
    description = "rows given to `TextDataModule.from_frame`"
    hub_id = None

    def __post_init__(self) -> None:
        for split, given in (self.rows or {}).items():
            if not isinstance(given, pd.DataFrame) and not (
                    isinstance(given, list) and all(isinstance(row, dict) for row in given)):
                raise UserError(f"{ARGUMENTS[split]} is a {type(given).__name__}; fix: give a pandas "
                                f"DataFrame or a list of dicts, one per row")

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "Frame | None":
        """``frame``: the name (in the hparams); ``frame_rows``: split -> rows (from_frame's, never stored)."""
        if "frame" not in arguments and "frame_rows" not in arguments:
            return None
        given = arguments.get("frame")
        if not isinstance(given, str) or not (name := folder_name(given)):
            raise UserError(f"name={given!r} holds no letter or digit to name the data by; fix: name it, "
                            f"e.g. name='reviews'")
        rows = {split: r for split, r in (arguments.get("frame_rows") or {}).items() if r is not None}
        return cls(name, rows or None)

    @cached_property
    def _loaded(self) -> Loaded:  # one conversion serves the cache identity and the data
        if self.rows is None:
            raise UserError(f"the rows of the frame '{self.name}' are not here (a DataFrame is no "
                            f"hyperparameter); fix: build the DataModule with TextDataModule.from_frame")
        return {split: _part(rows, ARGUMENTS[split]) for split, rows in self.rows.items()}

    def load(self) -> Loaded:
        return self._loaded

    def identity(self) -> dict[str, dict[str, str]]:
        return {"rows": {split: compat.fingerprint(part.dataset) for split, part in self.load().items()}}
