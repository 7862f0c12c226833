"""fastinv.checkpoint: atomic writes, weights_only reads, RNG states."""
import random

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
