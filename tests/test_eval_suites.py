"""The suite registry: every suite's declaration and code agree, tables are built from the
declarations, the report reads them, and progress is counted from what each suite declares."""
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from tqdm import tqdm

from fastinv.errors import UsageError
from fastinv.eval.config import EVAL_PRESETS
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.eval.modelspec import ModelSpec
from fastinv.eval.runner import evaluate, suite_module
from fastinv.eval.suites import SUITES, table_spec
from fastinv.report.figures import FIGURES, value_label
from fastinv.results import BETTER, Table

TINY = dict(synthetic_images=8, grid_size=2, folds=2, batch_size=64, progress=False)


@pytest.fixture()
def config(tmp_path: Path):
    return replace(EVAL_PRESETS["world"], cache_dir=tmp_path / "cache", **TINY)


@pytest.mark.parametrize("name", SUITES.names())
def test_every_suite_has_its_code_and_a_consistent_declaration(name: str) -> None:
    suite = SUITES.get(name)
    module = suite_module(suite)
    assert module.NAME == name and module.SUITE is suite and callable(module.run)
    assert suite.on_tables or callable(module.items)
    assert suite.tables and all(t.better in BETTER for t in suite.tables)
    assert all(t.figure is None or t.figure in FIGURES for t in suite.tables)
    assert set(suite.reads) | set(suite.needs) <= set(SUITES.names()) - {name}
    ranks = [t.panel_rank for t in suite.tables if t.panel_rank is not None]
    assert (suite.panel is not None) == bool(ranks) and len(set(ranks)) == len(ranks)


def test_table_keys_are_declared_once() -> None:
    keys = [t.key for _, suite in SUITES for t in suite.tables]
    assert len(keys) == len(set(keys))


def test_tables_are_built_from_their_declaration() -> None:
    downstream, extrinsic = SUITES.get("downstream"), SUITES.get("extrinsic")
    assert downstream.table_args("downstream_cv", folds=3) == {
        "key": "downstream_cv", "title": "Table 5: 3-fold CV score of linear probes (mean ± std, higher = better)",
        "better": "higher", "section": "downstream"}
    assert extrinsic.table_args("extrinsic_r2", dataset="world_latents")["key"] == "extrinsic_r2"
    other = extrinsic.table_args("extrinsic_r2", dataset="causal3dident")
    assert other["key"] == "extrinsic_r2_causal3dident" and other["title"].startswith("Table 4 (causal3dident)")
    assert table_spec("extrinsic", other["key"]) is extrinsic.table("extrinsic_r2")
    assert table_spec("knn", "extrinsic_r2") is None and table_spec("", "knn_top1") is None
    with pytest.raises(ValueError, match="declares no table 'knn_top1'"):
        downstream.table("knn_top1")


def test_the_report_labels_come_from_the_declarations() -> None:
    table = Table(**SUITES.get("extrinsic").table_args("extrinsic_r2", dataset="causal3dident"), columns=["x"],
                  rows={"m": {"x": 0.5}})
    assert value_label(table) == "test R²"
    assert value_label(Table("mine", "t", ["x"], {"m": {"x": 1.0}})) == "value"


def test_unknown_suite_is_a_usage_error_listing_the_suites(tiny_world: Path, config) -> None:
    with pytest.raises(UsageError, match="unknown suite 'tables'; valid: synthetic, realworld, extrinsic, downstream, "
                                         "knn, correlation"):
        evaluate([ModelSpec("a", "random", "resnet10x0.25")], {}, ["synthetic", "tables"], config, tiny_world)


def test_each_counts_one_step_per_base_model_and_item(config) -> None:
    ctx = EvalContext(config, {"a": None, "b": None}, {"a+b": ["a", "b"]})
    named = [ModelSpec(f"set{i}", "random") for i in range(3)]  # anything with a name
    with tqdm(total=2 * len(named), file=io.StringIO()) as bar:
        ctx.bar = bar
        seen = []
        for item in ctx.each("suite", named):
            seen.append((item.name, bar.n))
        assert seen == [("set0", 0), ("set1", 2), ("set2", 4)] and bar.n == bar.total == 6
        assert bar.postfix == "suite set2"


@pytest.mark.slow
def test_a_run_advances_progress_by_exactly_what_the_suites_declare(tiny_world: Path, config,
                                                                    capsys: pytest.CaptureFixture) -> None:
    models = [ModelSpec("a", "random", "resnet10x0.25"), ModelSpec("b", "random", "resnet10x0.25")]
    run = replace(config, progress=True)
    suites = ["realworld", "downstream", "knn"]
    data = EvalData(run, tiny_world)
    steps = len(models) * sum(len(suite_module(SUITES.get(name)).items(data)) for name in suites)
    results = evaluate(models, {"a+b": ["a", "b"]}, suites, run, tiny_world)
    counts = re.findall(r"eval: +\d+%\|[^|]*\| (\d+)/(\d+)", capsys.readouterr().err)
    assert steps > 0 and counts[-1] == (str(steps), str(steps))
    for table in results.tables:
        spec = SUITES.get(table.section).table(table.key)
        assert table.better == spec.better and table.key.startswith(spec.key)
