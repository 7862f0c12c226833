"""Results: validation, lossless JSON round trip, CSV tables, and one-line errors on bad files."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fastinv.errors import DataError
from fastinv.results import Results, Table, environment_meta, load_results, save_results

MODELS = ["Default", "Spatial", "Appearance", "Spa+App"]


def _results() -> Results:
    """Two tables with gaps, std, winners and awkward float values."""
    cv = Table(
        key="downstream_cv", title="Table 5: 5-fold CV (mean ± std)", columns=["CIFAR10", "300W"],
        rows={"Spatial": {"CIFAR10": 0.9213456789012345, "300W": 0.17},
              "Default": {"CIFAR10": 0.96, "300W": None},
              "Spa+App": {"CIFAR10": 0.95, "300W": 0.62}},
        better="higher", column_kinds={"CIFAR10": "recognition", "300W": "pose"},
        std={"Spatial": {"CIFAR10": 0.003, "300W": 0.03}, "Default": {"CIFAR10": 0.002, "300W": None},
             "Spa+App": {"CIFAR10": 1e-17, "300W": 0.021}},
        winners={"CIFAR10": "Default", "300W": None}, note="C = 1/wd, wd in logspace(-6, 5, 45)",
        section="downstream")
    maha = Table(key="synthetic_mahalanobis", title="Table 2 (top): Mahalanobis", columns=["Rotation", "Hue"],
                 rows={"Appearance": {"Rotation": 62.49, "Hue": 5.77}, "Default": {"Rotation": 43.49, "Hue": 13.72}},
                 better="lower", section="synthetic")
    return Results(tables=[cv, maha], models=MODELS, meta={"device": "cpu", "settings": {"images": 1000}},
                   skipped={"COIL100": "not found"})


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    results = _results()
    save_results(results, tmp_path)
    loaded = load_results(tmp_path)
    assert loaded == results
    assert loaded.table("downstream_cv").rows["Spatial"]["CIFAR10"] == 0.9213456789012345
    assert loaded.table("downstream_cv").std["Spa+App"]["CIFAR10"] == 1e-17
    assert loaded.table("downstream_cv").winners == {"CIFAR10": "Default", "300W": None}
    assert load_results(tmp_path / "results.json") == results
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_nan_and_numpy_values_are_stored_as_plain_json(tmp_path: Path) -> None:
    table = Table("knn_top1", "kNN top-1", ["world"], {"Default": {"world": np.float32(0.5)},
                                                       "Spatial": {"world": float("nan")}}, better="higher")
    save_results(Results(tables=[table], models=MODELS, meta={}), tmp_path)
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text
    rows = json.loads(text)["tables"][0]["rows"]
    assert rows == {"Default": {"world": 0.5}, "Spatial": {"world": None}}


def test_csv_has_one_row_per_model_in_evaluation_order(tmp_path: Path) -> None:
    save_results(_results(), tmp_path)
    with open(tmp_path / "tables" / "downstream_cv.csv", newline="") as stream:
        lines = list(csv.reader(stream))
    assert lines[0] == ["model", "CIFAR10", "CIFAR10_std", "300W", "300W_std"]
    assert [line[0] for line in lines[1:]] == ["Default", "Spatial", "Spa+App"]
    assert lines[1] == ["Default", "0.96", "0.002", "", ""]
    assert float(lines[2][1]) == 0.9213456789012345
    with open(tmp_path / "tables" / "synthetic_mahalanobis.csv", newline="") as stream:
        assert list(csv.reader(stream)) == [["model", "Rotation", "Hue"], ["Default", "43.49", "13.72"],
                                            ["Appearance", "62.49", "5.77"]]


def test_table_lookup_names_valid_keys() -> None:
    results = _results()
    assert results.table("synthetic_mahalanobis").better == "lower"
    with pytest.raises(KeyError, match="downstream_cv, synthetic_mahalanobis"):
        results.table("realworld_cosine")


@pytest.mark.parametrize("change, needle", [
    ({"key": "bad key/"}, "file-safe"),
    ({"better": "up"}, "better must be one of"),
    ({"section": "misc"}, "section must be one of"),
    ({"rows": {"Default": {"Flip": 1.0}}}, "not in columns"),
    ({"rows": {"Default": {"Rotation": "high"}}}, "must be a number"),
    ({"winners": {"Rotation": "Spatial"}}, "has no value there"),
    ({"column_kinds": {"Scale": "spatial"}}, "not in columns"),
    ({"std": {"Other": {"Rotation": 0.1}}}, "not in rows"),
])
def test_table_rejects_inconsistent_input(change: dict, needle: str) -> None:
    fields = {"key": "synthetic_cosine", "title": "t", "columns": ["Rotation"],
              "rows": {"Default": {"Rotation": 0.5}}} | change
    with pytest.raises(ValueError, match=needle):
        Table(**fields)


def test_results_rejects_duplicate_keys() -> None:
    table = _results().tables[0]
    with pytest.raises(ValueError, match="repeated"):
        Results(tables=[table, table], models=MODELS, meta={})


def test_meta_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="meta must hold only JSON values"):
        save_results(Results(tables=[], models=[], meta={"path": Path("/x")}), tmp_path)


@pytest.mark.parametrize("text, needle", [
    ("[1, 2", "not valid JSON (line 1"),
    ('{"format": "fastinv-results", "version": 1, "models": [], "meta": {}, "tables": [], "x": NaN}',
     "NaN is not allowed"),
    ('{"format": "other"}', "'format' must be 'fastinv-results'"),
    ('{"format": "fastinv-results", "version": 99}', "'version' 99 is not supported"),
    ('{"format": "fastinv-results", "version": 1, "meta": {}, "tables": []}', "has no 'models'"),
    ('{"format": "fastinv-results", "version": 1, "models": [], "meta": {}, "tables": {}}',
     "'tables' must be a JSON list"),
    ('{"format": "fastinv-results", "version": 1, "models": [], "meta": {}, '
     '"tables": [{"key": "k", "title": "t", "columns": ["a"], "rows": {}, "colour": 1}]}', "unknown fields"),
    ('{"format": "fastinv-results", "version": 1, "models": [], "meta": {}, '
     '"tables": [{"key": "k", "title": "t", "columns": ["a"], "rows": {"m": {"a": "x"}}}]}', "must be a number"),
])
def test_malformed_file_is_a_one_line_data_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_results(tmp_path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="results.json: not found"):
        load_results(tmp_path)


def test_environment_meta_records_versions() -> None:
    import torch

    meta = environment_meta("cpu")
    assert meta["torch"] == torch.__version__ and meta["device"] == "cpu"
    assert {"fastinv", "torchvision", "numpy", "python", "created", "command"} <= set(meta)
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta
