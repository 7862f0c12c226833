"""Results on disk: results.json (strict JSON, written atomically) and one CSV per table.

`save_results` writes what the evaluation produced; `load_results` reads it back for
`fastinv report`, with a one-line DataError naming the file when it is missing or malformed.
"""
import csv
import io
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from fastinv import __version__
from fastinv.errors import DataError
from fastinv.files import atomic_write
from fastinv.results.types import Results, Table

RESULTS_FILE = "results.json"
TABLES_DIR = "tables"
FORMAT_NAME = "fastinv-results"
FORMAT_VERSION = 1


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
        with atomic_write(path, "w") as handle:
            handle.write(table_csv(table, results.models))
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
    with atomic_write(out / RESULTS_FILE, "w") as handle:
        handle.write(text + "\n")
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
