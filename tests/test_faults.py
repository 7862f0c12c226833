"""Fault injection through the real command line: SIGKILL mid-run, corrupt images, a full disk,
a small /dev/shm, a torn feature cache and a booby-trapped checkpoint. Every run is a
`python -m fastinv` subprocess."""
import io
import json
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastinv.checkpoint import load_checkpoint
from fastinv.train.monitor import read_metrics

TINY = ["--arch", "resnet10x0.25", "--image-size", "32", "--queue-size", "64", "--head-hidden", "32",
        "--head-dim", "16", "--bn-splits", "4", "--momentum", "0.99", "--amp", "none", "--workers", "0",
        "--no-tensorboard", "--no-progress"]
TEMP_SUFFIX = ".tmp"
KILLS = 3
TIMEOUT_S = 300


def _fastinv(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastinv", *args]


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(_fastinv(*args), capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)


def _pretrain_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--data", str(data), "--out", str(out), *TINY, *extra]


def _checkpoint_step(out: Path) -> int:
    path = out / "checkpoint.pt"
    return load_checkpoint(path)["step"] if path.is_file() else 0


def _assert_only_whole_checkpoints(out: Path) -> None:
    """Every visible file that looks like a checkpoint loads; anything else is a hidden temp file."""
    for path in out.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(TEMP_SUFFIX), path
        elif path.suffix in (".pt", ".safetensors"):
            load_checkpoint(path)
    read_metrics(out)  # metrics.jsonl is never torn either


def _partial_writes(out: Path) -> list[Path]:
    return sorted(out.glob(".checkpoint.pt.*" + TEMP_SUFFIX))


def _kill_after(command: list[str], out: Path, target_step: int, delay_s: float, mid_write: bool) -> None:
    """Start `command`, wait until a checkpoint of at least `target_step` exists, then SIGKILL it
    `delay_s` later or, with `mid_write`, as soon as a checkpoint write is under way."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        reached = False
        while proc.poll() is None and time.monotonic() < deadline:
            if not reached:
                rows = [r for r in read_metrics(out) if "loss" in r] if (out / "metrics.jsonl").is_file() else []
                reached = (out / "checkpoint.pt").is_file() and bool(rows) and rows[-1]["step"] >= target_step
                if reached and not mid_write:
                    time.sleep(delay_s)
                    break
            elif _partial_writes(out):
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_random_points_resumes_to_the_same_weights(tiny_world, tmp_path):
    data = tiny_world / "trainset"
    flags = ("--batch-size", "8", "--epochs", "2", "--ckpt-every", "1", "--deterministic")
    whole = _run(*_pretrain_args(data, tmp_path / "whole", *flags))
    assert whole.returncode == 0, whole.stderr
    total = json.loads(whole.stdout.strip().splitlines()[-1])["total_steps"]

    out = tmp_path / "killed"
    command = _fastinv(*_pretrain_args(data, out, *flags))
    rng = random.Random(7)
    targets = sorted(rng.sample(range(1, total - 2), KILLS))
    for i, target in enumerate(targets):
        before = _checkpoint_step(out)
        _kill_after(command, out, target, rng.uniform(0.0, 0.4), mid_write=i == KILLS - 1)
        _assert_only_whole_checkpoints(out)
        assert _checkpoint_step(out) >= max(before, 1)
        if i == KILLS - 1:
            assert _partial_writes(out), "the kill was meant to land inside a checkpoint write"
    assert _checkpoint_step(out) < total
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "left by an interrupted checkpoint write" in resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == total

    expected = load_file(tmp_path / "whole" / "backbone.safetensors")
    got = load_file(out / "backbone.safetensors")
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    _assert_only_whole_checkpoints(out)
    assert not _partial_writes(out)


def _corrupt(files: list[Path], fraction: float, rng: random.Random) -> list[Path]:
    """Overwrite `fraction` of `files` with a truncated JPEG, zero bytes or garbage (in turn)."""
    bad = rng.sample(files, max(1, round(fraction * len(files))))
    for i, path in enumerate(bad):
        kind = i % 3
        if kind == 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        elif kind == 1:
            path.write_bytes(b"")
        else:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(900)))
    return bad


@pytest.mark.slow
def test_corrupt_images_are_skipped_and_named_by_pretrain_and_eval(tiny_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    rng = random.Random(3)
    bad_train = _corrupt(sorted((world / "trainset").rglob("*.jpg")), 0.05, rng)
    bad_test = _corrupt(sorted((world / "testset").rglob("*.jpg")), 0.05, rng)

    # batch 12 divides the 84 training images, so one epoch reads every file (nothing dropped)
    trained = _run(*_pretrain_args(world / "trainset", tmp_path / "run", "--batch-size", "12", "--queue-size", "72",
                                   "--epochs", "1"))
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout.strip().splitlines()[-1])["backbone"] is not None
    warned = [line for line in trained.stderr.splitlines() if "skipping undecodable image" in line]
    assert sorted(line.split("skipping undecodable image ")[1].split(":")[0] for line in warned) == \
        sorted(str(p) for p in bad_train)

    evaluated = _run("eval", "--model", f"trained={tmp_path / 'run' / 'backbone.safetensors'}", "--arch",
                     "resnet10x0.25", "--world", str(world), "--suite", "knn", "--out", str(tmp_path / "eval"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    skipped = [line for line in evaluated.stderr.splitlines() if line.startswith("skipped ")]
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    for path in bad_train + bad_test:  # each bad file is printed and recorded, not only the last per dataset
        assert any(str(path) in line for line in skipped), path
        assert any(str(path) in reason for reason in doc["skipped"].values()), path
    assert 0.0 <= doc["tables"][0]["rows"]["trained"]["world_shapes"] <= 1.0


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_full_disk_on_checkpoint_write_is_a_clear_error_and_keeps_the_old_one(tiny_world, tmp_path):
    args = _pretrain_args(tiny_world / "trainset", tmp_path, "--batch-size", "8", "--epochs", "1", "--max-steps", "2")
    assert _run(*args).returncode == 0
    path = tmp_path / "checkpoint.pt"
    before, kept = path.read_bytes(), load_checkpoint(path)
    assert kept["step"] == 2
    full = subprocess.run(_fastinv(*args[:-1], "4"), capture_output=True, text=True, timeout=TIMEOUT_S,
                          preexec_fn=_limit_file_size(len(before) // 2))
    assert full.returncode != 0
    err = full.stderr.strip().splitlines()
    assert "Traceback" not in full.stderr and "checkpoint" in err[-1] and "File too large" in err[-1], full.stderr
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def _small_shm_works() -> bool:
    """Whether this process may mount a private 8 MiB tmpfs over /dev/shm (root, util-linux unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=8m tmpfs /dev/shm"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def test_too_little_shared_memory_for_the_loader_is_a_clear_error(tiny_world):
    """A container's /dev/shm is often small: the torch loader's ring of batches does not fit in 8 MiB."""
    if not _small_shm_works():
        pytest.skip("needs root and `unshare -m` to mount a small tmpfs over /dev/shm")
    command = _fastinv("profile", "loader", "--data", str(tiny_world / "trainset"), "--batch-size", "16",
                       "--image-size", "224", "--workers", "2", "--warmup", "1", "--device", "cpu")
    script = f"mount -t tmpfs -o size=8m tmpfs /dev/shm && exec {shlex.join(command)}"
    run = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "shared memory" in err[0] and "--workers" in err[0], run.stderr


def _eval_tables(out: Path) -> tuple[list, dict]:
    doc = json.loads((out / "results.json").read_text())
    return doc["tables"], doc["meta"]["feature_cache"]


@pytest.mark.slow
def test_truncated_cache_file_is_rebuilt_by_eval(tiny_world, tmp_path):
    args = ["eval", "--model", "random", "--arch", "resnet10x0.25", "--world", str(tiny_world), "--suite", "knn",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    first = _run(*args, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    tables, counts = _eval_tables(tmp_path / "a")
    assert counts["misses"] >= 2 and counts["rebuilt"] == 0
    entries = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(entries) == counts["misses"]
    victim = entries[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])

    second = _run(*args, "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    again, counts = _eval_tables(tmp_path / "b")
    assert counts == {"hits": len(entries) - 1, "misses": 1, "rebuilt": 1}
    assert again == tables
    assert str(victim) in second.stderr and "recomputing" in second.stderr
    assert load_file(victim)["features"].ndim == 2


class _Payload:
    """Unpickling this calls open(marker, 'w'), which creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_checkpoint_with_a_pickle_payload_is_refused_by_eval(tiny_world, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"arch": "resnet10x0.25", "model": {"encoder_q.conv1.weight": _Payload(marker)}}, buffer)
    path.write_bytes(buffer.getvalue())
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # the payload is live ...
    assert marker.exists()
    marker.unlink()

    result = _run("eval", "--model", f"x={path}", "--out", str(tmp_path / "out"), "--cache-dir",
                  str(tmp_path / "cache"), "--world", str(tiny_world), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(path) in result.stderr
    assert "holds a pickled Python object" in result.stderr and "likely succeed" not in result.stderr
    assert not marker.exists()  # ... but eval never ran it
