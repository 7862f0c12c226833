"""`fastinv profile {loader,train,eval}` and the stage timers."""
import json
from pathlib import Path

import pytest
import torch

from fastinv.cli import OneLineParser, main
from fastinv.commands import profile
from fastinv.profiling.report import ProfileReport, format_table
from fastinv.profiling.timing import StageTimer
from fastinv.profiling.train import TRAIN_HOW
from fastinv.train.step import STEP_STAGES

TRAIN_STAGES = {"data_wait", "h2d", *STEP_STAGES}


def _subparsers(parser: OneLineParser) -> dict:
    return next(a for a in parser._actions if a.dest == "mode").choices


def test_every_flag_of_every_mode_has_help():
    parser = OneLineParser(prog="fastinv profile")
    profile.add_arguments(parser)
    modes = _subparsers(parser)
    assert set(modes) == {"loader", "train", "eval"}
    for sub in modes.values():
        assert all(action.help for action in sub._actions), sub.prog


def test_stage_timer_accumulates_and_resets():
    timer = StageTimer("cpu")
    for _ in range(3):
        with timer.stage("a"):
            torch.ones(64, 64).sum()
    timer.add("b", 0.5)
    totals = timer.totals()
    assert list(totals) == ["a", "b"] and totals["a"][1] == 3 and totals["a"][0] > 0 and totals["b"] == (0.5, 1)
    timer.reset()
    assert timer.totals() == {}


def test_table_is_aligned_and_shares_add_up_per_group():
    timer = StageTimer("cpu")
    timer.add("read", 1.0)
    timer.add("decode_something_long", 3.0)
    report = ProfileReport("loader", "cpu", {})
    report.add_stages(timer, "split", {"read": "r", "decode_something_long": "d"})
    report.rates["images_per_s"] = 12.5
    lines = format_table(report).splitlines()
    stage_lines = lines[1:5]
    assert len({len(line) for line in stage_lines}) == 1
    assert report.shares() == {"read": 0.25, "decode_something_long": 0.75}
    assert "| images_per_s |  12.5 |" in lines


def _run(argv: list[str], tmp_path: Path, capsys) -> dict:
    out = tmp_path / "profile.json"
    assert main(["profile", *argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| group" in printed and "warm-up excluded" in printed
    return json.loads(out.read_text())


def _assert_positive(result: dict, stages: set[str]) -> None:
    assert stages <= set(result["stages"])
    for name in stages:
        entry = result["stages"][name]
        assert entry["seconds"] > 0 and entry["calls"] >= 1 and entry["how"], name
    assert result["rates"] and all(value > 0 for value in result["rates"].values())


def test_profile_loader_table_and_json(tiny_world, tmp_path, capsys):
    result = _run(["loader", "--data", str(tiny_world / "trainset"), "--batch-size", "8", "--image-size", "16",
                   "--batches", "2", "--warmup", "1", "--workers", "0"], tmp_path, capsys)
    _assert_positive(result, {"end_to_end", "read", "decode", "augment", "normalise"})
    assert result["stages"]["end_to_end"]["calls"] == 2 and result["stages"]["decode"]["calls"] == 2
    assert result["timer"] == "perf_counter" and "h2d" not in result["stages"]  # no transfer on a CPU device


def test_profile_train_table_and_json(tiny_world, tmp_path, capsys):
    result = _run(["train", "--data", str(tiny_world / "trainset"), "--arch", "resnet10x0.25", "--batch-size", "8",
                   "--image-size", "16", "--workers", "0", "--bn-splits", "2", "--queue-size", "64", "--steps", "2",
                   "--warmup", "1", "--amp", "none", "--no-channels-last"], tmp_path, capsys)
    _assert_positive(result, TRAIN_STAGES | {"train_step"})
    assert all(result["stages"][name]["calls"] == 2 for name in TRAIN_STAGES)
    assert result["settings"]["arch"] == "resnet10x0.25" and result["settings"]["channels_last"] is False
    assert result["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto
    assert abs(sum(result["stages"][n]["share"] for n in TRAIN_STAGES) - 1.0) < 1e-9


@pytest.mark.slow
def test_profile_eval_table_and_json(tiny_world, tmp_path, capsys):
    result = _run(["eval", "--data", str(tiny_world), "--arch", "resnet10x0.25", "--image-size", "16",
                   "--batch-size", "32", "--folds", "2", "--probe-points", "3", "--warmup", "1"], tmp_path, capsys)
    solvers = {"reference_stats", "mahalanobis", "whitened_cosine", "linear_probe", "kernel_ridge_cv", "knn_classify"}
    _assert_positive(result, {"decode_resize", "h2d", "forward"} | solvers)
    assert result["settings"]["train_images"] == 84 and result["settings"]["test_images"] == 42


def test_every_train_stage_is_described():
    assert set(TRAIN_HOW) == TRAIN_STAGES


@pytest.mark.parametrize("flag", ["--out", "--resume", "--ckpt-every", "--log-every", "--knn-every", "--knn-train",
                                  "--knn-test", "--knn-k", "--max-steps", "--tensorboard", "--no-progress"])
def test_profile_train_refuses_the_flags_of_a_whole_run(flag, capsys):
    value = [] if flag in ("--tensorboard", "--no-progress") else ["1"]
    with pytest.raises(SystemExit) as exc:
        main(["profile", "train", "--data", "DATA", flag, *value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unrecognized arguments" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "DATA", "--steps", "0"], "--steps must be >= 1"),
    (["train", "--data", "DATA", "--queue-size", "100", "--batch-size", "8"], "--queue-size 100 must be a multiple"),
    (["train", "--data", "DATA", "--batch-size", "1"], "--batch-size must be at least 2"),
    (["eval"], "needs --data"),
    (["eval", "--data", "DATA", "--folds", "1"], "--folds must be at least 2"),
    (["loader", "--data", "DATA/trainset", "--device", "cuda:0"], "CUDA is not available"),
    (["loader", "--data", "DATA/trainset", "--warmup", "-1"], "--warmup must be >= 0"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tiny_world, capsys):
    if torch.cuda.is_available() and "cuda:0" in argv:
        pytest.skip("CUDA is present")
    argv = [a.replace("DATA", str(tiny_world)) for a in argv]
    assert main(["profile", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_mode_or_flag_exits_2_with_one_line(capsys):
    for argv in (["profile", "decode"], ["profile", "eval", "--knn-backend", "annoy"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
