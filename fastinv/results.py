"""Typed evaluation results and their persistence: results.json plus one CSV per table.

The evaluation suites fill `Table`s, collect them in a `Results`, and call `save_results`;
`fastinv report` reads them back with `load_results`. A value of None means "not measured";
non-finite numbers are stored as None, so results.json is always strict JSON.
"""
import csv
import io
import json
import math
import os
import platform
import re
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastinv import __version__
from fastinv.errors import DataError

RESULTS_FILE = "results.json"
TABLES_DIR = "tables"
FORMAT_NAME = "fastinv-results"
FORMAT_VERSION = 1
BETTER = ("lower", "higher", "none")
SECTIONS = ("", "synthetic", "realworld", "extrinsic", "downstream", "knn", "correlation")
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
    "appearance"); `section` says which part of the evaluation produced the table.
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
        if self.section not in SECTIONS:
            raise ValueError(f"table {self.key!r}: section must be one of {SECTIONS}, got {self.section!r}")
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


def environment_meta(device: str) -> dict:
    """Versions, device and provenance to store in `Results.meta` (creation time in UTC, command line)."""
    import numpy
    import torch
    import torchvision

    meta = {
        "fastinv": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["fastinv", *sys.argv[1:]]),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        meta["device_name"] = torch.cuda.get_device_name(torch.device(device))
        meta["cuda"] = torch.version.cuda
    return meta


def results_to_dict(results: Results) -> dict:
    """The JSON document of `results` (what results.json holds)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "models": list(results.models),
        "meta": results.meta,
        "skipped": dict(results.skipped),
        "tables": [asdict(table) for table in results.tables],
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temporary file in the same folder, fsync, then os.replace."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def table_csv(table: Table, order: list[str]) -> str:
    """The CSV text of a table: `model,col1[,col1_std],...`; empty cells for None; full precision."""
    header = ["model"]
    for column in table.columns:
        header.append(column)
        if table.std is not None:
            header.append(f"{column}_std")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for name in table.row_names(order):
        line: list[str] = [name]
        for column in table.columns:
            line.append(_csv_number(table.rows[name][column]))
            if table.std is not None:
                line.append(_csv_number(table.std.get(name, {}).get(column)))
        writer.writerow(line)
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(value)


def write_table_csvs(results: Results, out_dir: Path) -> list[Path]:
    """Write out_dir/tables/{key}.csv for every table; return the paths written."""
    folder = Path(out_dir) / TABLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in results.tables:
        path = folder / f"{table.key}.csv"
        write_text_atomic(path, table_csv(table, results.models))
        paths.append(path)
    return paths


def save_results(results: Results, out_dir: Path) -> None:
    """Write out_dir/results.json atomically and one CSV per table under out_dir/tables/."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(results_to_dict(results), indent=2, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"results.meta must hold only JSON values (str, number, bool, None, list, dict): "
                         f"{exc}") from None
    write_text_atomic(out / RESULTS_FILE, text + "\n")
    write_table_csvs(results, out)


def _reject_nan(token: str) -> float:
    raise ValueError(f"{token} is not allowed (non-finite numbers are stored as null)")


def _require(document: dict, name: str, kind: type, where: str) -> Any:
    if name not in document:
        raise ValueError(f"{where} has no '{name}'")
    if not isinstance(document[name], kind):
        raise ValueError(f"{where} '{name}' must be a JSON {kind.__name__}, got {type(document[name]).__name__}")
    return document[name]


def _table_from_dict(document: Any, index: int) -> Table:
    where = f"tables[{index}]"
    if not isinstance(document, dict):
        raise ValueError(f"{where} must be an object")
    known = {f.name for f in fields(Table)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}")
    for name, kind in (("key", str), ("title", str), ("columns", list), ("rows", dict)):
        _require(document, name, kind, where)
    return Table(**document)


def results_from_dict(document: Any) -> Results:
    """Build Results from the JSON document written by `save_results`; ValueError says what is wrong."""
    if not isinstance(document, dict):
        raise ValueError("the top level must be a JSON object")
    if document.get("format") != FORMAT_NAME:
        raise ValueError(f"'format' must be {FORMAT_NAME!r}, got {document.get('format')!r}")
    version = document.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"'version' {version!r} is not supported by fastinv {__version__} "
                         f"(reads up to {FORMAT_VERSION})")
    tables = [_table_from_dict(t, i) for i, t in enumerate(_require(document, "tables", list, "the file"))]
    return Results(tables=tables, models=_require(document, "models", list, "the file"),
                   meta=_require(document, "meta", dict, "the file"),
                   skipped=document.get("skipped", {}))


def load_results(path_or_dir: Path) -> Results:
    """Read results.json (a file, or a folder holding one); DataError naming the file if missing or malformed."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (point at the folder `fastinv eval --out` wrote, or its {RESULTS_FILE})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_nan)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    try:
        return results_from_dict(document)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: malformed results: {exc}") from None
