"""The Markdown text of a report: models, settings, skipped suites, then every table paper-style."""
import json

from fastinv.report.formatting import BULLET, best_rows, decimals, format_number
from fastinv.results import Results, Table

SECTION_TITLES = {
    "synthetic": "Synthetic invariance (paper Table 2)",
    "realworld": "Real-world invariance (paper Table 3)",
    "extrinsic": "Extrinsic invariance (paper Table 4)",
    "downstream": "Downstream linear probes (paper Table 5)",
    "knn": "kNN monitor",
    "correlation": "Synthetic vs real-world invariance (paper Fig. E.1)",
    "": "Other tables",
}
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
        lines += ["## Overview (paper Figure 1)", "", f"![Figure 1: overview]({figures['figure1']})", ""]
    sections: dict[str, list[Table]] = {}
    for table in results.tables:
        sections.setdefault(table.section, []).append(table)
    for section, tables in sections.items():
        lines += [f"## {SECTION_TITLES[section]}", ""]
        for table in tables:
            lines += [f"### {table.title}", "", table_markdown(table, results.models), ""]
        if section == "synthetic" and "synthetic_heatmap" in figures:
            lines += [f"![Synthetic invariance heat map]({figures['synthetic_heatmap']})", ""]
        if section == "correlation" and "correlation" in figures:
            lines += [f"![Spearman correlation, synthetic vs real-world]({figures['correlation']})", ""]
    if not results.tables:
        lines += ["No tables were produced.", ""]
    return "\n".join(lines)
