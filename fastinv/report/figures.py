"""The report's PNG figures, drawn with matplotlib's object API (Agg canvas, no display, no pyplot state).

Which tables a figure draws is what the suites declare (`fastinv.eval.suites`): Figure 1 has one
panel per suite with a panel, the other figures draw the tables declared for them.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fastinv.eval.suites import SUITES, table_spec
from fastinv.files import atomic_write
from fastinv.report.formatting import BULLET, MISSING, best_rows, decimals, format_number
from fastinv.results import Results, Table

DPI = 130
# Column-group shading: the paper's green for spatial-like, orange for appearance-like columns.
KIND_COLOURS = {"spatial": "#d6efd0", "pose": "#d6efd0", "appearance": "#fde2c4", "colour": "#fde2c4",
                "color": "#fde2c4", "recognition": "#dbe8f6"}
SPARE_KIND_COLOURS = ("#eadcf2", "#f6f1c9", "#d4eeee", "#eeeeee")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
FUSION_STYLES = ("-", "--", ":", "-.")


def value_label(table: Table) -> str:
    """What a table's numbers are, for an axis or colour-bar label (as its suite declares; "value"
    for a table no suite declares)."""
    spec = table_spec(table.section, table.key)
    return "value" if spec is None else spec.value_label


def drawn_in(results: Results, figure: str) -> list[Table]:
    """The tables of `results` that their suites declare for `figure` ("synthetic_heatmap", "correlation")."""
    return [t for t in results.tables if (spec := table_spec(t.section, t.key)) is not None and spec.figure == figure]


def model_styles(models: list[str]) -> dict[str, dict]:
    """A fixed line style per model: tab10 colours in evaluation order, fusion models ('+') in black."""
    palette = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7]  # drop tab10 grey
    styles, plain, fused = {}, 0, 0
    for name in models:
        if "+" in name:
            styles[name] = {"color": "black", "linestyle": FUSION_STYLES[fused % len(FUSION_STYLES)],
                            "marker": MARKERS[fused % len(MARKERS)], "linewidth": 2.2}
            fused += 1
        else:
            styles[name] = {"color": palette[plain % len(palette)], "linestyle": "-",
                            "marker": MARKERS[plain % len(MARKERS)], "linewidth": 1.6}
            plain += 1
    return styles


def kind_colours(results: Results) -> dict[str, str]:
    """A light background colour per column kind, the same in every panel."""
    colours, spare = {}, iter(SPARE_KIND_COLOURS * 4)
    for table in results.tables:
        for kind in table.column_kinds.values():
            if kind not in colours:
                colours[kind] = KIND_COLOURS.get(kind.lower()) or next(spare)
    return colours


def _panel_rank(table: Table) -> tuple[int, bool] | None:
    """Where `table` stands among its suite's choices for the Figure 1 panel (a per-dataset table
    after its main dataset's), or None when it is not one of them."""
    spec = table_spec(table.section, table.key)
    if spec is None or spec.panel_rank is None:
        return None
    return spec.panel_rank, table.key != spec.key


def figure1_tables(results: Results) -> list[Table]:
    """The table drawn in each Figure 1 panel, one per suite with a panel, in the registry's order:
    the suite's first choice present, else its first table where higher is better, else its first."""
    chosen = []
    for name, suite in SUITES:
        candidates = [t for t in results.tables if t.section == name]
        if suite.panel is None or not candidates:
            continue
        ranked = sorted((t for t in candidates if _panel_rank(t) is not None), key=_panel_rank)
        ranked += [t for t in candidates if t.better == "higher"]
        chosen.append((ranked or candidates)[0])
    return chosen


def _kind_spans(table: Table, columns: list[str]) -> list[tuple[str, int, int]]:
    """(kind, first index, last index) of each contiguous run of columns with the same kind."""
    spans: list[tuple[str, int, int]] = []
    for index, column in enumerate(columns):
        kind = table.column_kinds.get(column, "")
        if spans and spans[-1][0] == kind:
            spans[-1] = (kind, spans[-1][1], index)
        else:
            spans.append((kind, index, index))
    return spans


def _row_values(cells: dict[str, dict[str, float | None]] | None, row: str, columns: list[str]) -> np.ndarray:
    values = (cells or {}).get(row, {})
    return np.array([np.nan if values.get(c) is None else values[c] for c in columns], dtype=float)


def _line_panel(ax: Axes, table: Table, order: list[str], styles: dict[str, dict], shades: dict[str, str]) -> None:
    columns = table.grouped_columns()
    x = np.arange(len(columns))
    for kind, first, last in _kind_spans(table, columns):
        if kind:
            ax.axvspan(first - 0.5, last + 0.5, color=shades[kind], zorder=0, lw=0)
    for row in table.row_names(order):
        style = styles.get(row, {"color": "grey", "marker": "o", "linestyle": "-", "linewidth": 1.2})
        y = _row_values(table.rows, row, columns)
        if table.std is not None and row in table.std:
            ax.errorbar(x, y, yerr=_row_values(table.std, row, columns), label=row, capsize=3, markersize=5,
                        **style)
        else:
            ax.plot(x, y, label=row, markersize=5, **style)
    ax.set_xticks(x, [str(c) for c in columns], rotation=30, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.set_ylabel(value_label(table))
    suite = SUITES.get(table.section)
    direction = f" ({table.better} = {'more invariant' if suite.invariance else 'better'})" if table.better != "none" else ""
    ax.set_title(suite.panel + direction, fontsize=11, loc="left")
    ax.grid(axis="y", color="white" if table.column_kinds else "#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)


def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG to `path` atomically; return `path`."""
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")
    return path


def draw_figure1(results: Results, path: Path) -> Path | None:
    """The paper's Figure 1: one line panel per evaluation section, one line per model; None if no section."""
    tables = figure1_tables(results)
    if not tables:
        return None
    styles, shades = model_styles(results.models), kind_colours(results)
    width = max(9.0, 0.55 * max(len(t.columns) for t in tables) + 4.0)
    fig = Figure(figsize=(width, 3.1 * len(tables) + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(tables), 1, squeeze=False)[:, 0]
    for ax, table in zip(axes, tables):
        _line_panel(ax, table, results.models, styles, shades)
    handles, seen = [], set()
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in seen:
                seen.add(label)
                handles.append((handle, label))
    kinds_by_shade: dict[str, list[str]] = {}
    for kind, shade in shades.items():
        if any(kind in t.column_kinds.values() for t in tables):
            kinds_by_shade.setdefault(shade, []).append(kind)
    handles += [(Patch(color=shade), " / ".join(kinds) + " columns") for shade, kinds in kinds_by_shade.items()]
    fig.legend([h for h, _ in handles], [label for _, label in handles], loc="outside right upper",
               title="model (black: fusion)", fontsize=9)
    fig.suptitle("Invariance and transfer by model (cf. paper Figure 1)", fontsize=13)
    return _save(fig, path)


def _text_colour(rgba: tuple[float, ...]) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.55 else "white"


def _heatmap(fig: Figure, ax: Axes, table: Table, rows: list[str], cmap_name: str,
             limits: tuple[float, float], bar_label: str, mark_best: bool) -> None:
    """Annotated heat map of `table` (rows x grouped columns) with group separators and a colour bar."""
    columns = table.grouped_columns()
    matrix = np.vstack([_row_values(table.rows, row, columns) for row in rows])
    cmap = matplotlib.colormaps[cmap_name].with_extremes(bad="#e4e4e4")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    places = 2 if decimals(table) == 3 and abs(limits[1] - limits[0]) <= 2.0 else decimals(table) - 1
    best = {c: best_rows(table, c) for c in columns} if mark_best else {}
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            value = table.rows[row][column]
            if value is None:
                ax.text(j, i, MISSING, ha="center", va="center", fontsize=8, color="#666666")
                continue
            text = format_number(value, places) + (BULLET if table.winners.get(column) == row else "")
            bold = row in best.get(column, set())
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color=_text_colour(cmap(image.norm(value))), fontweight="bold" if bold else "normal")
    ax.set_xticks(np.arange(len(columns)), [str(c) for c in columns], rotation=35, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.tick_params(length=0)
    for kind, first, last in _kind_spans(table, columns):
        if first > 0:
            ax.axvline(first - 0.5, color="white", linewidth=3)
        if kind:
            ax.text((first + last) / 2, -0.6, kind, ha="center", va="bottom", fontsize=9, style="italic")
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label(bar_label)


def draw_synthetic_heatmap(results: Results, path: Path) -> Path | None:
    """Heat maps of the synthetic-invariance tables (models x transforms); None if there are none."""
    tables = drawn_in(results, "synthetic_heatmap")
    if not tables:
        return None
    width = max(8.0, 0.62 * max(len(t.columns) for t in tables) + 3.0)
    heights = [0.42 * len(t.rows) + 1.9 for t in tables]
    fig = Figure(figsize=(width, sum(heights) + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(tables), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, table in zip(axes, tables):
        values = [v for row in table.rows.values() for v in row.values() if v is not None]
        limits = (min(values), max(values)) if values else (0.0, 1.0)
        cmap = "viridis_r" if table.better == "lower" else "viridis"
        _heatmap(fig, ax, table, table.row_names(results.models), cmap, limits,
                 f"{value_label(table)}\n(brighter = more invariant)" if table.better != "none"
                 else value_label(table), mark_best=True)
        ax.set_title(table.title, fontsize=10, loc="left", pad=20)
    fig.suptitle(f"Synthetic invariance — bold: most invariant per transform; {BULLET}: significantly most "
                 "invariant", fontsize=11)
    return _save(fig, path)


def _transform_kinds(results: Results) -> dict[str, str]:
    """Kind of each synthetic transform, taken from the column kinds of the synthetic heat map's tables."""
    kinds: dict[str, str] = {}
    for table in drawn_in(results, "synthetic_heatmap"):
        kinds.update(table.column_kinds)
    return kinds


def draw_correlation(results: Results, path: Path) -> Path | None:
    """Fig. E.1: Spearman correlation of synthetic (rows) vs real-world (columns) invariance; None if absent."""
    tables = drawn_in(results, "correlation")
    if not tables:
        return None
    table = tables[0]
    kinds = _transform_kinds(results)
    rows = table.row_names([])
    rank = {kind: i for i, kind in enumerate(dict.fromkeys(kinds.values()))}
    rows = sorted(rows, key=lambda r: rank.get(kinds.get(r, ""), len(rank)))
    fig = Figure(figsize=(max(6.5, 0.7 * len(table.columns) + 4.0), 0.38 * len(rows) + 2.4), dpi=DPI,
                 layout="constrained")
    ax = fig.subplots()
    _heatmap(fig, ax, table, rows, "RdBu_r", (-1.0, 1.0), "Spearman rank correlation over models",
             mark_best=False)
    for index in range(1, len(rows)):
        if kinds.get(rows[index]) != kinds.get(rows[index - 1]):
            ax.axhline(index - 0.5, color="black", linewidth=1.5)
    labels = [f"{r} ({kinds[r]})" if r in kinds else r for r in rows]
    ax.set_yticks(np.arange(len(rows)), labels)
    ax.set_ylabel("synthetic transform")
    ax.set_xlabel("real-world dataset")
    ax.set_title(table.title, fontsize=10, loc="left", pad=20)
    return _save(fig, path)


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: how it is drawn (None when its tables are absent) and its alt text."""

    draw: Callable[[Results, Path], Path | None]
    caption: str


FIGURES: dict[str, FigureSpec] = {
    "figure1": FigureSpec(draw_figure1, "Figure 1: overview"),
    "synthetic_heatmap": FigureSpec(draw_synthetic_heatmap, "Synthetic invariance heat map"),
    "correlation": FigureSpec(draw_correlation, "Spearman correlation, synthetic vs real-world"),
}


def write_figures(results: Results, folder: Path) -> dict[str, Path]:
    """Draw every figure whose tables exist into `folder`; return figure name -> PNG path."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, figure in FIGURES.items():
        path = figure.draw(results, folder / f"{name}.png")
        if path is not None:
            written[name] = path
    return written
