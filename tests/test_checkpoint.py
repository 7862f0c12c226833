"""fastinv.checkpoint: atomic writes, weights_only reads, RNG states, one-line errors for files
it refuses."""
import io
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fastinv.checkpoint import find_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fastinv.errors import DataError


def test_round_trip_with_weights_only_and_no_temp_files(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7, "config": {"lr": 0.1, "arch": "resnet18",
             "hidden": None}, "rng": rng_state()}
    path = save_checkpoint(state, tmp_path / "checkpoint.pt")
    assert torch.load(path, weights_only=True)["step"] == 7
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["config"] == state["config"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert find_checkpoint(tmp_path) == path and find_checkpoint(tmp_path / "none") is None


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint({"step": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(Exception):
        save_checkpoint({"step": 2, "bad": lambda: None}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_rng_states_restore_every_generator(tmp_path):
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_missing_or_non_dict_checkpoint_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(DataError, match="expected a dict"):
        load_checkpoint(tmp_path / "tensor.pt")


def _bad_checkpoints(folder: Path) -> dict[str, Path]:
    """Files `load_checkpoint` must refuse: a plain pickle (protocol 4, which makes torch's
    weights-only reader warn), a truncated torch zip, seeded random bytes, and a torch file
    holding a class besides its tensors."""
    files = {name: folder / f"{name}.pt" for name in ("pickle4", "truncated", "random", "object")}
    files["pickle4"].write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(4)}}, buffer)
    files["truncated"].write_bytes(buffer.getvalue()[:300])
    files["random"].write_bytes(random.Random(0).randbytes(900))
    torch.save({"state_dict": {"w": torch.zeros(4)}, "optimizer": torch.optim.SGD}, files["object"])
    return files


def _assert_says_what_is_accepted(message: str) -> None:
    assert len(message.splitlines()) == 1
    assert "fastinv reads its own checkpoints, state dicts of tensors" in message and ".safetensors" in message
    assert 'torch.save(torch.load(p, weights_only=False)["state_dict"], q)' in message
    assert "likely succeed" not in message and "add_safe_globals" not in message  # torch's advice is not relayed


@pytest.mark.parametrize("kind", ["pickle4", "truncated", "random", "object"])
def test_unreadable_checkpoint_is_one_data_error_without_warnings(kind, tmp_path):
    path = _bad_checkpoints(tmp_path)[kind]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DataError) as info:
            load_checkpoint(path)
    assert not seen, [str(w.message) for w in seen]
    assert str(path) in str(info.value)
    _assert_says_what_is_accepted(str(info.value))


def test_a_pickled_object_is_named(tmp_path):
    with pytest.raises(DataError, match=r"holds a pickled Python object \(torch.optim.sgd.SGD\)"):
        load_checkpoint(_bad_checkpoints(tmp_path)["object"])


@pytest.mark.parametrize("command,kind", [("eval", "pickle4"), ("eval", "truncated"), ("pretrain", "pickle4"),
                                          ("pretrain", "object")])
def test_bad_model_or_resume_file_prints_one_line(command, kind, tiny_world, tmp_path, fastinv_cli):
    path = _bad_checkpoints(tmp_path)[kind]
    if command == "eval":
        args = ["eval", "--model", f"m={path}", "--world", str(tiny_world), "--out", str(tmp_path / "out"),
                "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    else:
        args = ["pretrain", "--data", str(tiny_world / "trainset"), "--out", str(tmp_path / "out"), "--resume",
                str(path), "--arch", "resnet10x0.25", "--image-size", "32", "--batch-size", "16", "--bn-splits", "4",
                "--queue-size", "64", "--workers", "0", "--no-progress", "--no-tensorboard"]
    result = fastinv_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"fastinv {command}: error: checkpoint {path}"), result.stderr
    _assert_says_what_is_accepted(result.stderr.strip())
