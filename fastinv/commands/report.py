"""`fastinv report`: re-render report.md, figures and CSV tables from an evaluation's results.json."""
import argparse
import json
from pathlib import Path

from fastinv.paths import writable_dir
from fastinv.results import RESULTS_FILE, TABLES_DIR, load_results, save_results, write_table_csvs

HELP = "re-render a report (Markdown tables + PNG figures + CSVs) from an evaluation's results.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv report`."""
    parser.add_argument("dir", metavar="DIR",
                        help=f"folder written by `fastinv eval --out` (holding {RESULTS_FILE}), or the file itself")
    parser.add_argument("--out", metavar="DIR2", default=argparse.SUPPRESS,
                        help="folder to write report.md, figures/ and tables/ into; a copy of results.json goes "
                        "along so the folder stands alone (default: the folder of DIR's results.json)")


def run(args: argparse.Namespace) -> int:
    """Load the results, write CSVs, figures and report.md, and print what was written as JSON."""
    from fastinv.report import FIGURES_DIR, write_report

    source = Path(args.dir)
    results = load_results(source)
    source_dir = source if source.is_dir() else source.parent
    out = writable_dir(getattr(args, "out", source_dir))
    if out.resolve() == source_dir.resolve():
        write_table_csvs(results, out)
    else:
        save_results(results, out)
    tables = [str(out / TABLES_DIR / f"{table.key}.csv") for table in results.tables]
    report = write_report(results, out)
    figures = sorted(str(p) for p in (report.parent / FIGURES_DIR).glob("*.png"))
    print(json.dumps({"report": str(report), "figures": figures, "tables": tables}))
    return 0
