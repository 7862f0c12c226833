"""Typed evaluation results and their files: results.json plus one CSV per table.

The evaluation suites fill `Table`s, collect them in a `Results`, and call `save_results`;
`fastinv report` reads them back with `load_results`. The types live in `fastinv.results.types`,
the files in `fastinv.results.io`, the run's provenance in `fastinv.results.meta`.
"""
from fastinv.results.io import (FORMAT_NAME, FORMAT_VERSION, RESULTS_FILE, TABLES_DIR, load_results, results_from_dict,
                                results_to_dict, save_results, table_csv, write_table_csvs)
from fastinv.results.meta import environment_meta
from fastinv.results.types import BETTER, Cells, Results, Table

__all__ = ["BETTER", "FORMAT_NAME", "FORMAT_VERSION", "RESULTS_FILE", "TABLES_DIR", "Cells", "Results", "Table",
           "environment_meta", "load_results", "results_from_dict", "results_to_dict", "save_results", "table_csv",
           "write_table_csvs"]
