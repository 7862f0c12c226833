"""Old results.json files render exactly as they did: the same report.md and the same figure inputs.

The files under tests/data/report/ were written before the suites declared their tables (section
titles, value labels and figure roles were then lists in the report modules): each case holds a
results.json, the report.md rendered from it and `figures.json`, what each figure drew (titles,
labels, category ticks, annotations, legend, and the plotted values). `tiny_eval` is a
`fastinv eval --all` run of three random-init models, random init and a fusion on a 32-px world
and small copies of COIL-100, Flickr1024, RealBlur-J, ExposureErrors, Causal3DIdent, CIFAR10 and
Caltech101; `paper_numbers` holds the paper's tables as test_report.py builds them.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter

from fastinv.report import figures as figures_module
from fastinv.report import write_report
from fastinv.results import load_results

CASES = Path(__file__).parent / "data" / "report"


def _numbers(values) -> list:
    """Plotted values as JSON: floats, None where missing."""
    array = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    return [None if np.isnan(v) else float(v) for v in array.ravel()]


def figure_inputs(fig: Figure) -> dict:
    """What a figure shows, independent of how matplotlib rasterises it: its titles and labels, the
    category tick labels it sets, its annotations (with their weight), legend entries, line and
    image data with colours, and error-bar extents."""
    axes = []
    for ax in fig.axes:
        entry = {"titles": [ax.get_title(loc=loc) for loc in ("left", "center", "right")],
                 "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                 "texts": [[t.get_text(), str(t.get_fontweight()), str(t.get_color())] for t in ax.texts],
                 "lines": [[line.get_label(), str(line.get_color()), line.get_linestyle(), _numbers(line.get_ydata())]
                           for line in ax.lines],
                 "images": [_numbers(image.get_array()) for image in ax.images],
                 "segments": [_numbers(np.concatenate(c.get_segments())) for c in ax.collections
                              if hasattr(c, "get_segments") and c.get_segments()]}
        for name, axis in (("xticks", ax.xaxis), ("yticks", ax.yaxis)):
            if isinstance(axis.get_major_formatter(), FixedFormatter):
                entry[name] = [t.get_text() for t in axis.get_ticklabels()]
        axes.append(entry)
    return {"suptitle": fig.get_suptitle(), "axes": axes,
            "legends": [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]}


def render(results_file: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    """report.md and the inputs of every figure that `write_report` draws from `results_file`."""
    drawn = {}
    save = figures_module._save

    def record(fig: Figure, path: Path) -> Path:
        drawn[Path(path).stem] = figure_inputs(fig)
        return save(fig, path)

    monkeypatch.setattr(figures_module, "_save", record)
    report = write_report(load_results(results_file), out)
    return report.read_text(encoding="utf-8"), json.loads(json.dumps(drawn))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_old_results_render_the_same_report_and_figures(case: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = CASES / case
    text, figures = render(folder / "results.json", tmp_path, monkeypatch)
    assert text == (folder / "report.md").read_text(encoding="utf-8")
    expected = json.loads((folder / "figures.json").read_text(encoding="utf-8"))
    assert sorted(figures) == sorted(expected)
    for name in expected:
        assert figures[name] == expected[name], name
