"""`fastinv pretrain` on the command line: a tiny run, auto-resume, one-line errors."""
import json
import shutil

import pytest

from fastinv.cli import main

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


@pytest.mark.parametrize("flags,message", [
    (["--data", "/no/such/folder"], "does not exist"),
    (["--queue-size", "100"], "multiple of the keys"),
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
