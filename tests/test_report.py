"""The report: Markdown tables in the paper's style, PNG figures, and `fastinv report` end to end."""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from fastinv.commands import report as report_command
from fastinv.errors import DataError
from fastinv.report import write_report
from fastinv.report.figures import figure1_tables, model_styles
from fastinv.report.markdown import report_markdown, table_markdown
from fastinv.results import Results, Table, load_results, save_results

MODELS = ["Random", "Supervised", "Default", "Spatial", "Appearance", "Spa+App", "Def+Spa+App"]
SPATIAL = ["Resized crop", "H flip", "V flip", "Scale", "Shear", "Rotation", "Translation", "Deform"]
APPEARANCE = ["Grayscale", "Brightness", "Contrast", "Saturation", "Hue", "Blur", "Sharpness", "Equalize",
              "Posterize", "Invert"]
TRANSFORMS = SPATIAL + APPEARANCE
# Paper Table 2 (Random, Supervised, Default, Spatial, Appearance), used here as realistic renderer input.
MAHALANOBIS = [
    [69.40, 34.14, 35.35, 67.03, 69.57, 71.65, 56.33, 65.28, 22.81, 73.25, 59.03, 46.63, 42.39, 49.17, 52.59,
     27.46, 27.46, 32.88],
    [57.44, 12.33, 24.07, 40.37, 63.93, 47.67, 22.51, 34.25, 19.87, 40.43, 37.05, 26.61, 35.95, 54.92, 42.15,
     17.44, 22.74, 27.32],
    [58.72, 9.92, 21.30, 35.75, 56.58, 43.49, 16.45, 30.16, 7.78, 26.07, 25.66, 12.17, 13.72, 65.84, 31.07,
     12.81, 17.95, 24.71],
    [59.43, 8.17, 15.57, 32.05, 56.50, 32.93, 13.85, 26.08, 26.58, 46.25, 61.67, 39.34, 47.33, 63.37, 48.83,
     25.41, 38.46, 28.95],
    [64.35, 27.52, 29.05, 56.33, 71.81, 62.49, 33.14, 52.20, 2.57, 19.71, 22.84, 6.98, 5.77, 30.38, 16.86,
     9.55, 12.18, 29.24],
]
COSINE = [
    [0.03, 0.56, 0.54, 0.16, 0.04, 0.07, 0.40, 0.20, 0.81, 0.17, 0.52, 0.59, 0.60, 0.48, 0.51, 0.68, 0.70, 0.52],
    [0.18, 0.92, 0.71, 0.57, 0.11, 0.43, 0.87, 0.69, 0.81, 0.54, 0.64, 0.79, 0.64, 0.29, 0.55, 0.84, 0.77, 0.64],
    [0.19, 0.95, 0.75, 0.63, 0.11, 0.45, 0.92, 0.72, 0.96, 0.77, 0.79, 0.94, 0.93, 0.29, 0.71, 0.90, 0.83, 0.67],
    [0.25, 0.96, 0.87, 0.70, 0.26, 0.70, 0.95, 0.81, 0.65, 0.43, 0.35, 0.60, 0.42, 0.25, 0.50, 0.69, 0.62, 0.59],
    [0.03, 0.63, 0.59, 0.26, 0.03, 0.09, 0.71, 0.33, 1.00, 0.88, 0.86, 0.98, 0.99, 0.73, 0.91, 0.95, 0.91, 0.58],
]
REAL = ["Flickr1024 stereo", "COIL100 pose", "ALOI viewpoint", "ALOT viewpoint", "ALOI illumination",
        "ALOT illumination", "ALOI temperature", "ALOT temperature", "ExposureErrors", "RealBlur"]
REAL_KINDS = ["spatial"] * 4 + ["illumination"] * 2 + ["appearance"] * 4
REAL_COSINE = [
    [0.62, 0.42, 0.48, 0.24, 0.58, 0.44, 0.90, 0.73, 0.41, 0.91],
    [0.90, 0.70, 0.64, 0.67, 0.77, 0.75, 0.97, 0.89, 0.84, 0.89],
    [0.94, 0.75, 0.77, 0.70, 0.84, 0.76, 0.98, 0.97, 0.90, 0.90],
    [0.94, 0.84, 0.88, 0.72, 0.90, 0.80, 0.94, 0.78, 0.69, 0.82],
    [0.74, 0.54, 0.64, 0.32, 0.79, 0.61, 1.00, 0.99, 0.96, 0.98],
]
LATENTS = ["Obj. pos. x", "Obj. pos. y", "Obj. pos. z", "Obj. rot. x", "Obj. rot. y", "Obj. rot. z",
           "Spot. pos.", "Obj. colour", "Spot. colour", "Bkg. colour"]
TASKS = ["CIFAR10", "Caltech101", "Flowers", "300W", "CelebA", "LSPose"]


def _table(rows: list[list[float]], models: list[str], columns: list[str]) -> dict[str, dict[str, float]]:
    return {m: dict(zip(columns, r)) for m, r in zip(models, rows)}


def paper_results() -> Results:
    """Every table kind `fastinv eval` writes, filled with the paper's numbers (and a few gaps)."""
    base = MODELS[:5]
    kinds = {c: "spatial" for c in SPATIAL} | {c: "appearance" for c in APPEARANCE}
    cos_winners = {c: None for c in TRANSFORMS} | {"Resized crop": "Spatial", "Rotation": "Spatial",
                                                   "Brightness": "Appearance", "Hue": "Appearance"}
    downstream = _table([[0.55, 0.25, 0.21, 0.24, 0.47, 0.10], [0.98, 0.90, 0.86, 0.17, 0.49, 0.20],
                         [0.96, 0.87, 0.83, 0.47, 0.60, 0.29], [0.92, 0.65, 0.74, 0.17, 0.49, 0.24],
                         [0.84, 0.57, 0.20, 0.68, 0.62, 0.25], [0.95, 0.74, 0.68, 0.62, 0.64, 0.29],
                         [0.95, 0.86, 0.81, 0.65, 0.68, 0.33]], MODELS, TASKS)
    rng = np.random.default_rng(0)
    std = {m: {t: float(rng.uniform(0.001, 0.03)) for t in TASKS} for m in MODELS}
    cosine = np.array(COSINE)
    real = np.array(REAL_COSINE)
    rho = [[float(spearmanr(cosine[:, i], real[:, j]).statistic) for j in range(len(REAL))]
           for i in range(len(TRANSFORMS))]
    return Results(
        models=MODELS,
        meta={"fastinv": "0.1.0", "torch": "2.4.0", "device": "cpu", "created": "2025-01-01T00:00:00+00:00",
              "command": "fastinv eval --models a.pt b.pt", "settings": {"images": 1000, "estimator": "ledoit-wolf"}},
        skipped={"COIL100": "folder /data/coil-100 not found (pass --coil100 DIR)"},
        tables=[
            Table("synthetic_mahalanobis", "Table 2 (top): Mahalanobis distance to the clean view "
                  "(lower = more invariant)", TRANSFORMS, _table(MAHALANOBIS, base, TRANSFORMS), better="lower",
                  column_kinds=kinds, note="Ledoit-Wolf shrinkage covariance from 1000 reference images.",
                  section="synthetic"),
            Table("synthetic_cosine", "Table 2 (bottom): cosine similarity to the clean view (higher = more "
                  "invariant)", TRANSFORMS, _table(COSINE, base, TRANSFORMS), better="higher", column_kinds=kinds,
                  winners=cos_winners, note="Hoeffding test, delta = 0.05 / 2 per comparison.",
                  section="synthetic"),
            Table("realworld_cosine", "Table 3 (bottom): real-world cosine similarity", REAL,
                  _table(REAL_COSINE, base, REAL), better="higher", column_kinds=dict(zip(REAL, REAL_KINDS)),
                  winners={"COIL100 pose": "Spatial", "RealBlur": "Appearance"}, section="realworld"),
            Table("extrinsic_r2", "Table 4: test R² of kernel ridge regression per latent", LATENTS,
                  _table([[0.89, 0.91, 0.84, 0.66, 0.67, 0.62, 0.92, 0.93, 0.91, 1.00],
                          [0.94, 0.97, 0.91, 0.80, 0.84, 0.79, 0.95, 0.56, 0.22, 0.88],
                          [0.94, 0.97, 0.91, 0.80, 0.82, 0.77, 0.95, 0.92, 0.90, 1.00],
                          [0.95, 0.97, 0.94, 0.87, 0.89, 0.85, 0.96, 0.92, 0.89, None]],
                         ["Spatial", "Appearance", "Spa+App", "Def+Spa+App"], LATENTS),
                  better="higher", column_kinds={c: "pose" if i < 7 else "colour" for i, c in enumerate(LATENTS)},
                  section="extrinsic"),
            Table("downstream_cv", "Table 5: 5-fold CV score of linear probes (mean ± std)", TASKS, downstream,
                  better="higher", std=std, section="downstream",
                  column_kinds={t: "recognition" if i < 3 else "pose" for i, t in enumerate(TASKS)}),
            Table("correlation_spearman", "Fig. E.1: Spearman correlation over models, synthetic vs real-world "
                  "cosine similarity", REAL, _table(rho, TRANSFORMS, REAL), section="correlation"),
        ],
    )


def _cell(markdown: str, row: str, column: str) -> str:
    """The text of one cell of a rendered Markdown table."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == row:
            return cells[header.index(column)]
    raise AssertionError(f"row {row!r} not in table")


def test_bold_follows_lower_is_better() -> None:
    results = paper_results()
    text = table_markdown(results.table("synthetic_mahalanobis"), results.models)
    assert _cell(text, "Spatial", "Rotation") == "**32.93**"
    assert _cell(text, "Appearance", "Grayscale") == "**2.57**"
    assert _cell(text, "Random", "Rotation") == "71.65"
    assert text.count("**") // 2 == len(TRANSFORMS) + 1  # one bold per column, plus the legend's **bold**


def test_bold_follows_higher_is_better_and_bullets_mark_winners() -> None:
    results = paper_results()
    text = table_markdown(results.table("synthetic_cosine"), results.models)
    assert _cell(text, "Spatial", "Rotation") == "**0.700**•"
    assert _cell(text, "Appearance", "Hue") == "**0.990**•"
    assert _cell(text, "Default", "H flip") == "0.950"  # Spatial's 0.96 is best, not bulleted
    assert _cell(text, "Spatial", "H flip") == "**0.960**"
    assert text.count("•") == 4 + 1  # four winners and the legend


def test_ties_are_all_bold_and_gaps_show_a_dash() -> None:
    results = paper_results()
    text = table_markdown(results.table("extrinsic_r2"), results.models)
    assert _cell(text, "Appearance", "Obj. pos. y") == _cell(text, "Spa+App", "Obj. pos. y") == "**0.970**"
    assert _cell(text, "Def+Spa+App", "Bkg. colour") == "—"
    assert _cell(text, "Spatial", "Bkg. colour") == "**1.000**"


def test_std_cells_and_column_groups() -> None:
    results = paper_results()
    table = results.table("downstream_cv")
    text = table_markdown(table, results.models)
    expected = f"**0.980 ± {table.std['Supervised']['CIFAR10']:.3f}**"
    assert _cell(text, "Supervised", "CIFAR10") == expected
    assert "*recognition*: CIFAR10 … Flowers (3)" in text and "*pose*: 300W … LSPose (3)" in text


def test_columns_are_grouped_by_kind() -> None:
    table = Table("t", "t", ["a", "b", "c", "d"], {"M": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}},
                  column_kinds={"a": "x", "b": "y", "c": "x", "d": "y"})
    header = table_markdown(table, ["M"]).splitlines()[2]
    assert header == "| Model | a | c | b | d |"


def _assert_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        assert image.width <= 4000 and image.height <= 4000
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank canvas


def test_write_report_draws_every_figure(tmp_path: Path) -> None:
    report = write_report(paper_results(), tmp_path)
    text = report.read_text(encoding="utf-8")
    for name, size in (("figure1", (1000, 1200)), ("synthetic_heatmap", (1000, 700)), ("correlation", (700, 600))):
        path = tmp_path / "figures" / f"{name}.png"
        _assert_png(path, size)
        assert f"](figures/{name}.png)" in text
    assert "**COIL100**: folder /data/coil-100 not found" in text
    assert text.index("Table 2 (top)") < text.index("synthetic_heatmap.png") < text.index("Table 3")


def test_figures_are_drawn_only_for_tables_that_exist(tmp_path: Path) -> None:
    full = paper_results()
    results = Results(tables=[full.table("downstream_cv")], models=full.models, meta={})
    report = write_report(results, tmp_path)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["figure1.png"]
    assert "synthetic_heatmap" not in report.read_text(encoding="utf-8")
    empty = write_report(Results(tables=[], models=[], meta={}), tmp_path / "empty")
    assert "No tables were produced." in empty.read_text(encoding="utf-8")
    assert not any((tmp_path / "empty" / "figures").iterdir())


def test_figure1_panels_prefer_similarities_and_fusion_is_black() -> None:
    results = paper_results()
    assert [t.key for t in figure1_tables(results)] == ["synthetic_cosine", "realworld_cosine", "extrinsic_r2",
                                                        "downstream_cv"]
    styles = model_styles(results.models)
    assert styles["Spa+App"]["color"] == styles["Def+Spa+App"]["color"] == "black"
    assert styles["Spa+App"]["linestyle"] != styles["Def+Spa+App"]["linestyle"]
    plain = [styles[m]["color"] for m in results.models if "+" not in m]
    assert len(set(plain)) == len(plain) and "black" not in plain


def test_markdown_tables_are_well_formed() -> None:
    text = report_markdown(paper_results(), {})
    blocks = re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.MULTILINE)
    assert len(blocks) == len(paper_results().tables)
    for block in blocks:
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1  # every line has the same number of cells


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastinv", *args], capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())


@pytest.mark.slow
def test_report_command_rerenders_from_results_json(tmp_path: Path) -> None:
    source, out = tmp_path / "eval", tmp_path / "copy"
    save_results(paper_results(), source)
    result = _run_cli("report", str(source), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["report"]) == out / "report.md"
    assert load_results(out) == load_results(source)
    assert (out / "tables" / "downstream_cv.csv").is_file()
    for name in ("figure1", "synthetic_heatmap", "correlation"):
        _assert_png(out / "figures" / f"{name}.png", (600, 500))
    assert "**32.93**" in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_command_module_writes_into_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    save_results(paper_results(), tmp_path / "eval")
    assert report_command.run(parser.parse_args([str(tmp_path / "eval" / "results.json")])) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(tmp_path / "eval" / "report.md")
    assert not (tmp_path / "elsewhere").exists()
    assert report_command.run(parser.parse_args([str(tmp_path / "eval"), "--out", str(tmp_path / "elsewhere")])) == 0
    assert (tmp_path / "elsewhere" / "results.json").is_file() and (tmp_path / "elsewhere" / "report.md").is_file()
    with pytest.raises(DataError, match="not found"):
        report_command.run(parser.parse_args([str(tmp_path / "missing")]))


@pytest.mark.parametrize("content, needle", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ('{"format": "fastinv-results", "version": 1, "models": [], "meta": {}, "tables": [{"key": "a b"}]}',
     "has no 'title'"),
])
def test_report_command_bad_results_is_one_line_exit_2(tmp_path: Path, content: str | None, needle: str) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content, encoding="utf-8")
    result = _run_cli("report", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr and "results.json" in result.stderr
