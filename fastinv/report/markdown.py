"""The Markdown text of a report: models, settings, skipped suites, then every table paper-style."""
import json

from fastinv.eval.suites import SUITES, table_spec
from fastinv.report.figures import FIGURES
from fastinv.report.formatting import BULLET, best_rows, decimals, format_number
from fastinv.results import Results, Table

OTHER_TABLES = "Other tables"
ENVIRONMENT_KEYS = ("fastinv", "torch", "torchvision", "numpy", "python", "device", "device_name", "cuda",
                    "platform", "created")
_MAX_SETTING = 100


def _escape(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_SETTING else text[: _MAX_SETTING - 1] + "…"


def _cell(table: Table, row: str, column: str, places: int, bold: bool) -> str:
    value = table.rows[row][column]
    text = format_number(value, places)
    if value is not None and table.std is not None and table.std.get(row, {}).get(column) is not None:
        text = f"{text} ± {format_number(table.std[row][column], places)}"
    if bold:
        text = f"**{text}**"
    if table.winners.get(column) == row:
        text += BULLET
    return text


def _column_groups(table: Table, columns: list[str]) -> str:
    """One line naming each kind's columns, e.g. '*spatial*: Resized crop … Deform (8)'."""
    groups: dict[str, list[str]] = {}
    for column in columns:
        groups.setdefault(table.column_kinds.get(column, "other"), []).append(column)
    parts = []
    for kind, members in groups.items():
        span = members[0] if len(members) == 1 else f"{members[0]} … {members[-1]}"
        parts.append(f"*{kind}*: {span} ({len(members)})")
    return "Column groups — " + " · ".join(parts)


def table_markdown(table: Table, order: list[str]) -> str:
    """A table as GitHub Markdown: rows in `order`, columns grouped by kind, best bold, winners bulleted."""
    columns = table.grouped_columns()
    rows = table.row_names(order)
    places = decimals(table)
    corner = "Model" if all(r in order for r in rows) else ""
    lines = []
    if table.column_kinds:
        lines += [_column_groups(table, columns), ""]
    lines.append("| " + " | ".join([corner, *(_escape(c) for c in columns)]) + " |")
    lines.append("|:--|" + "--:|" * len(columns))
    best = {column: best_rows(table, column) for column in columns}
    for row in rows:
        cells = [_cell(table, row, c, places, row in best[c]) for c in columns]
        lines.append("| " + " | ".join([_escape(row), *cells]) + " |")
    legend = []
    if any(best.values()):
        legend.append(f"**bold** = best per column ({table.better} is better)")
    if any(table.winners.values()):
        legend.append(f"{BULLET} = significantly best")
    if table.std is not None:
        legend.append("mean ± std")
    footer = "; ".join(legend)
    if table.note:
        footer = f"{footer}. {table.note}" if footer else table.note
    if footer:
        lines += ["", footer]
    return "\n".join(lines)


def _environment(meta: dict) -> str:
    parts = [f"{key} {meta[key]}" for key in ENVIRONMENT_KEYS if key in meta and key != "created"]
    line = ", ".join(parts) if parts else "not recorded"
    if "created" in meta:
        line += f"; created {meta['created']}"
    return line


def _settings(meta: dict) -> list[str]:
    items = dict(meta.get("settings", {})) if isinstance(meta.get("settings"), dict) else {}
    items.update({k: v for k, v in meta.items() if k not in ENVIRONMENT_KEYS and k not in ("settings", "command")})
    return [f"- {key}: `{_short(value)}`" for key, value in items.items()]


def _section_title(section: str) -> str:
    """The heading of a section: its suite's title, or a heading for tables of no suite."""
    return SUITES.get(section).title if section else OTHER_TABLES


def _figures_of(tables: list[Table]) -> list[str]:
    """The figures (in report order) that draw any of `tables`, by their suites' declarations."""
    declared = {spec.figure for t in tables if (spec := table_spec(t.section, t.key)) is not None}
    return [name for name in FIGURES if name in declared]


def _image(name: str, figures: dict[str, str]) -> list[str]:
    return [f"![{FIGURES[name].caption}]({figures[name]})", ""]


def report_markdown(results: Results, figures: dict[str, str]) -> str:
    """The whole report.md text; `figures` maps figure name -> path relative to the report."""
    meta = results.meta
    lines = ["# fastinv evaluation report", ""]
    lines += ["## Models", "", ", ".join(f"`{m}`" for m in results.models) or "(none)", ""]
    lines += ["## Settings", "", f"Environment: {_environment(meta)}", ""]
    if "command" in meta:
        lines += [f"Command: `{meta['command']}`", ""]
    settings = _settings(meta)
    if settings:
        lines += [*settings, ""]
    lines += ["## Skipped", ""]
    lines += [f"- **{_escape(name)}**: {reason}" for name, reason in results.skipped.items()] or ["Nothing was skipped."]
    lines.append("")
    if "figure1" in figures:
        lines += ["## Overview (paper Figure 1)", "", *_image("figure1", figures)]
    sections: dict[str, list[Table]] = {}
    for table in results.tables:
        sections.setdefault(table.section, []).append(table)
    for section, tables in sections.items():
        lines += [f"## {_section_title(section)}", ""]
        for table in tables:
            lines += [f"### {table.title}", "", table_markdown(table, results.models), ""]
        for name in _figures_of(tables):
            if name in figures:
                lines += _image(name, figures)
    if not results.tables:
        lines += ["No tables were produced.", ""]
    return "\n".join(lines)
