"""Typed evaluation results: `Table`s collected in a `Results`, validated when they are built.

A value of None means "not measured"; non-finite numbers become None, so every table can be
written as strict JSON. A table's `section` is the suite that wrote it ("" for other tables).
"""
import math
import re
from dataclasses import dataclass, field
from typing import Any

from fastinv.eval.suites import SUITES

BETTER = ("lower", "higher", "none")
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Cells = dict[str, dict[str, float | None]]


def _clean_cells(cells: Cells, columns: list[str], what: str) -> Cells:
    """Return `cells` with every value a float or None; reject columns the table does not have."""
    if not isinstance(cells, dict):
        raise ValueError(f"{what} must map row -> column -> value, got {type(cells).__name__}")
    cleaned: Cells = {}
    for row, values in cells.items():
        if not isinstance(values, dict):
            raise ValueError(f"{what}[{row!r}] must map column -> value, got {type(values).__name__}")
        unknown = [c for c in values if c not in columns]
        if unknown:
            raise ValueError(f"{what}[{row!r}] has columns {unknown} that are not in columns {columns}")
        cleaned[str(row)] = {c: _clean_value(values.get(c), f"{what}[{row!r}][{c!r}]") for c in columns}
    return cleaned


def _clean_value(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"{what} must be a number or None, got {value!r}")
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class Table:
    """One results table: rows (usually models) x columns (transforms, datasets, latents, tasks).

    `better` decides which value of a column is bold ("lower", "higher" or "none"); `winners`
    names, per column, the model that is significantly best (the paper's bullet) or None;
    `std` optionally holds a +/- for every cell; `column_kinds` groups columns (e.g. "spatial",
    "appearance"); `section` names the suite that produced the table ("" for none).
    """

    key: str
    title: str
    columns: list[str]
    rows: Cells
    better: str = "none"
    column_kinds: dict[str, str] = field(default_factory=dict)
    std: Cells | None = None
    winners: dict[str, str | None] = field(default_factory=dict)
    note: str = ""
    section: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_PATTERN.match(self.key):
            raise ValueError(f"table key {self.key!r} must be file-safe: letters, digits, '_', '-', '.'")
        for name in ("title", "note"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"table {self.key!r}: {name} must be a string")
        self.columns = [str(c) for c in self.columns]
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"table {self.key!r}: columns must be unique, got {self.columns}")
        if self.better not in BETTER:
            raise ValueError(f"table {self.key!r}: better must be one of {BETTER}, got {self.better!r}")
        sections = ("", *SUITES.names())
        if self.section not in sections:
            raise ValueError(f"table {self.key!r}: section must be one of {sections}, got {self.section!r}")
        self.rows = _clean_cells(self.rows, self.columns, f"table {self.key!r} rows")
        if self.std is not None:
            self.std = _clean_cells(self.std, self.columns, f"table {self.key!r} std")
            extra = [r for r in self.std if r not in self.rows]
            if extra:
                raise ValueError(f"table {self.key!r}: std has rows {extra} that are not in rows")
        for name, mapping in (("column_kinds", self.column_kinds), ("winners", self.winners)):
            unknown = [c for c in mapping if c not in self.columns]
            if unknown:
                raise ValueError(f"table {self.key!r}: {name} names columns {unknown} that are not in columns")
        if not all(isinstance(kind, str) for kind in self.column_kinds.values()):
            raise ValueError(f"table {self.key!r}: column_kinds must map column -> group label (a string)")
        for column, winner in self.winners.items():
            if winner is not None and self.rows.get(winner, {}).get(column) is None:
                raise ValueError(f"table {self.key!r}: winner {winner!r} of column {column!r} has no value there")

    def row_names(self, order: list[str]) -> list[str]:
        """Row names in evaluation `order` first, then any other rows in the order they were added."""
        known = [name for name in order if name in self.rows]
        return known + [name for name in self.rows if name not in known]

    def grouped_columns(self) -> list[str]:
        """Columns reordered so each kind is contiguous, kinds in order of first appearance."""
        kinds: list[str] = []
        for column in self.columns:
            kind = self.column_kinds.get(column, "")
            if kind not in kinds:
                kinds.append(kind)
        return [c for kind in kinds for c in self.columns if self.column_kinds.get(c, "") == kind]


@dataclass
class Results:
    """Every table of one evaluation, the models in evaluation order, settings and what was skipped."""

    tables: list[Table]
    models: list[str]
    meta: dict
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = [t.key for t in self.tables]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"table keys must be unique; repeated: {duplicates}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        if not isinstance(self.skipped, dict) or not all(isinstance(v, str) for v in self.skipped.values()):
            raise ValueError("skipped must map dataset/suite name -> reason (a string)")
        self.models = [str(m) for m in self.models]
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be unique, got {self.models}")

    def table(self, key: str) -> Table:
        """Return the table with this key; KeyError listing the valid keys otherwise."""
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(f"no table {key!r}; valid keys: {', '.join(t.key for t in self.tables) or '(none)'}")
