"""Render evaluation results as a Markdown report with PNG figures."""
from pathlib import Path

from fastinv.report.figures import write_figures
from fastinv.report.markdown import report_markdown
from fastinv.files import atomic_write
from fastinv.results import Results

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"


def write_report(results: Results, out_dir: Path) -> Path:
    """Write out_dir/report.md and out_dir/figures/*.png for `results`; return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(results, out / FIGURES_DIR)
    relative = {name: path.relative_to(out).as_posix() for name, path in figures.items()}
    path = out / REPORT_FILE
    with atomic_write(path, "w") as handle:
        handle.write(report_markdown(results, relative))
    return path


__all__ = ["write_report", "REPORT_FILE", "FIGURES_DIR"]
