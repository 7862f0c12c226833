"""`fastinv profile loader` and `fastinv convert --to beton`, and the FFCV backend reading it back."""
import argparse

import pytest
import torch

from fastinv.cli import OneLineParser
from fastinv.commands import convert, profile
from fastinv.errors import UsageError
from fastinv.pipelines import LoaderConfig, build_two_view_loader


def _args(module, argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="fastinv")
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_every_flag_has_help():
    for module in (profile, convert):
        parser = OneLineParser(prog="fastinv")
        module.add_arguments(parser)
        assert all(action.help for action in parser._actions)


def test_profile_loader_prints_images_per_second(tiny_world, capsys):
    args = _args(profile, ["loader", "--data", str(tiny_world / "trainset"), "--batch-size", "8", "--image-size", "16",
                           "--batches", "2", "--warmup", "1", "--workers", "0"])
    assert profile.run(args) == 0
    out = capsys.readouterr().out
    assert "images/s (two views)" in out and "backend=torch" in out


@pytest.mark.parametrize("argv, message", [
    (["eval"], "needs --data"),
    (["loader"], "needs --data"),
    (["loader", "--data", "x", "--batches", "0"], "--batches must be >= 1"),
])
def test_profile_bad_input_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=message):
        profile.run(_args(profile, argv))


def test_profile_rejects_unknown_backend():
    with pytest.raises(SystemExit) as exc:
        _args(profile, ["loader", "--backend", "opencv"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_convert_to_beton_and_read_two_views(tiny_world, tmp_path, capsys):
    pytest.importorskip("ffcv")
    out = tmp_path / "train.beton"
    assert convert.run(_args(convert, ["--to", "beton", "--data", str(tiny_world / "trainset"), "--out", str(out)])) == 0
    assert '"skipped": 0' in capsys.readouterr().out
    cfg = LoaderConfig(root=out, backend="ffcv", batch_size=8, workers=1, image_size=16, seed=1)
    loader = build_two_view_loader(cfg)
    reference = build_two_view_loader(LoaderConfig(root=tiny_world / "trainset", batch_size=8, image_size=16, seed=1))
    assert loader.classes == reference.classes and len(loader) == len(reference)
    loader.start_at(1)
    batches = list(loader)
    assert len(batches) == len(loader) - 1
    for b, r in zip(batches, list(reference)[1:]):
        assert b.view1.shape == (8, 3, 16, 16) and b.view1.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(b.indices, r.indices) and torch.equal(b.labels, r.labels)
        assert not torch.equal(b.view1, b.view2)


def test_convert_needs_a_beton_name(tiny_world, tmp_path):
    pytest.importorskip("ffcv")
    with pytest.raises(UsageError, match="must end in .beton"):
        convert.run(_args(convert, ["--to", "beton", "--data", str(tiny_world / "trainset"),
                                    "--out", str(tmp_path / "x.bin")]))
