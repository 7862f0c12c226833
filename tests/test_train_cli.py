"""`fastinv pretrain` on the command line: a tiny run, auto-resume, the flags of a TrainConfig,
one-line errors that name flags, a configuration checked once."""
import json
import re
import shutil
from dataclasses import fields

import pytest

from fastinv.cli import OneLineParser, main
from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, RunConfig, TrainConfig
from fastinv.train.flags import FLAGS, add_training_arguments, config_from_args, in_flag_terms

TINY = ["--image-size", "32", "--batch-size", "16", "--workers", "0", "--arch", "resnet10x0.25", "--head-hidden", "32",
        "--head-dim", "16", "--bn-splits", "4", "--queue-size", "64", "--momentum", "0.99", "--no-tensorboard",
        "--no-progress"]


def test_pretrain_runs_then_resumes_from_its_folder(tiny_world, tmp_path, capsys):
    args = ["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path), *TINY]
    assert main([*args, "--epochs", "1", "--max-steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["step"] == 2 and first["backbone"] is None
    assert main([*args, "--epochs", "1", "--knn-every", "1"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["step"] == second["total_steps"] == 5 and 0.0 <= second["knn_top1"] <= 1.0
    assert (tmp_path / "backbone.safetensors").is_file() and (tmp_path / "metrics.jsonl").is_file()


def _parser(whole_run: bool = True) -> OneLineParser:
    parser = OneLineParser(prog="fastinv pretrain")
    add_training_arguments(parser, whole_run=whole_run)
    return parser


def test_every_config_field_has_a_flag_that_the_parser_declares():
    options = {option for action in _parser()._actions for option in action.option_strings}
    paths = {f"{part.name}.{f.name}" for part in fields(TrainConfig) for f in fields(part.type)}
    assert set(FLAGS) == paths and set(FLAGS.values()) <= options


def test_default_flags_give_the_default_config_and_flags_set_their_fields():
    assert config_from_args(_parser().parse_args(["--data", "d", "--out", "o"])) == \
        TrainConfig(DataConfig(root="d"), RunConfig(out="o"))
    cfg = config_from_args(_parser().parse_args(["--data", "d", "--out", "o", "--queue-size", "512", "--momentum",
                                                 "0.9", "--sgd-momentum", "0.5", "--no-progress", "--bn", "plain"]))
    assert (cfg.moco.K, cfg.moco.m, cfg.optim.momentum, cfg.run.progress, cfg.model.bn) == (512, 0.9, 0.5, False,
                                                                                            "plain")
    step_only = config_from_args(_parser(whole_run=False).parse_args(["--data", "d", "--seed", "3"]))
    assert step_only == TrainConfig(DataConfig(root="d"), RunConfig(out="", seed=3), ModelConfig(), MoCoConfig())


def test_config_fields_in_a_message_become_flags():
    assert in_flag_terms("moco.K 100 must be a multiple of data.batch_size; model.bn split, run.max_steps") == \
        "--queue-size 100 must be a multiple of --batch-size; --bn split, --max-steps"


def test_the_configuration_is_checked_once(tiny_world, tmp_path, capsys, monkeypatch):
    calls = []
    check = TrainConfig.validate
    monkeypatch.setattr(TrainConfig, "validate", lambda self, world_size=1: calls.append(world_size) or
                        check(self, world_size))
    args = ["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path), *TINY]
    assert main([*args, "--epochs", "1", "--max-steps", "1"]) == 0
    assert calls == [1]


@pytest.mark.parametrize("flags,message", [
    (["--data", "/no/such/folder"], "does not exist"),
    (["--queue-size", "100"], "--queue-size 100 must be a multiple of the keys"),
    (["--batch-size", "1"], "--batch-size must be at least 2, got 1"),
    (["--bn-splits", "5"], "--bn split: the per-process batch 16 must be a multiple of --bn-splits 5"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--max-steps", "0"], "--max-steps must be at least 1"),
    (["--arch", "vgg16"], "unknown architecture"),
    (["--bn", "shuffle"], "needs several processes"),
    (["--recipe", "/no/recipe.yaml"], "recipe"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_values_are_one_line_errors_with_exit_2(flags, message, tiny_world, tmp_path, capsys):
    args = ["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path / "o"), *TINY, *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not re.search(r"\b(data|model|moco|optim|run)\.[a-z_]+", err)  # flags, not config fields


def test_bad_choice_is_a_one_line_usage_error(tiny_world, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path), "--amp", "fp8"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "invalid choice" in err and len(err.splitlines()) == 1


def test_leave_one_out_knn_on_a_single_image_is_a_one_line_error(tiny_world, tmp_path, capsys):
    folder = tmp_path / "one" / "arrow"
    folder.mkdir(parents=True)
    shutil.copy(tiny_world / "trainset" / "arrow" / "000000.jpg", folder)
    knn = ["--knn-every", "1", "--knn-train", str(folder.parent), "--knn-test", str(folder.parent)]
    assert main(["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path / "o"), *TINY, *knn]) == 2
    err = capsys.readouterr().err.strip()
    assert "leave-one-out kNN" in err and "found 1" in err and len(err.splitlines()) == 1
