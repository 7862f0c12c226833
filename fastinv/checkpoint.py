"""Checkpoint files for every long job: atomic writes, safe reads, RNG states as tensors.

A checkpoint is a dict of tensors and primitive containers only, so it loads with
`torch.load(weights_only=True)`; nothing is ever unpickled beyond that.
"""
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from fastinv.errors import DataError, FastinvError
from fastinv.files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
ACCEPTED = ("fastinv reads its own checkpoints, state dicts of tensors saved with torch.save (.pt, .pth) and "
            ".safetensors files, and never unpickles other objects; to use a checkpoint you trust, re-save its "
            "state dict from your own Python, e.g. torch.save(torch.load(p, weights_only=False)[\"state_dict\"], q), "
            "and pass q")
_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


class CheckpointWriteError(FastinvError):
    """The system refused a checkpoint write (disk full, file too large, no permission)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically and durably (`fastinv.files.atomic_write`), so a crash
    leaves either the old or the new checkpoint, never a torn one."""
    target = Path(path)
    try:
        with atomic_write(target) as handle:
            torch.save(state, handle)
    except BaseException as exc:
        cause = _os_error(exc)
        if cause is not None:
            raise CheckpointWriteError(f"cannot write checkpoint {target}: {cause.strerror or cause}; any previous "
                                       "checkpoint there is kept (free disk space or choose another folder)") from exc
        raise
    return target


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint (torch file or .safetensors) onto the CPU without unpickling objects;
    raise DataError in one line when the file is missing or not a safe checkpoint. Warnings the
    reader raises on the way to such an error are dropped (the error says what is wrong);
    after a successful read they are passed on."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"checkpoint {source}: {'is not a file' if source.exists() else 'does not exist'}")
    if source.suffix == ".safetensors":
        try:
            return dict(load_file(source, device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"checkpoint {source}: not a readable safetensors file ({_first_line(exc)})") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - arbitrary bytes fail anywhere in the unpickler (IndexError, KeyError...)
            raise DataError(f"checkpoint {source}: {_unreadable(exc)}. {ACCEPTED}") from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {source}: holds a {type(state).__name__}, expected a dict of tensors")
    return state


def find_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint a run writes in `folder`, if there is one."""
    path = Path(folder) / CHECKPOINT_NAME
    return path if path.is_file() else None


def remove_partial_writes(folder: str | os.PathLike, name: str = CHECKPOINT_NAME) -> list[Path]:
    """Delete the temporary files that writes of `name` killed mid-way left in `folder`; return them.
    Call it only while no other process writes `name` there (e.g. when a run starts)."""
    stale = sorted(Path(folder).glob(f".{name}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch CPU and CUDA RNG states, as tensors and ints."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states written by `rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc` (torch's writer re-raises it as a RuntimeError), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _unreadable(exc: BaseException) -> str:
    """Why torch's weights-only reader refused a file, in our words (torch's own message suggests
    turning the safety off)."""
    inner = exc.__context__ or exc
    text = f"{exc} {inner}"
    found = _GLOBAL.search(text)
    if found:
        return f"holds a pickled Python object ({found.group(1)}), not only tensors and plain containers"
    if "zip archive" in text:
        return "a damaged torch file (its zip archive cannot be read)"
    detail = _first_line(inner)
    return f"not a torch checkpoint, or a damaged one ({type(inner).__name__ if 'weights_only' in detail else detail})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
