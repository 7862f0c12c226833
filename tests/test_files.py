"""Atomic writes: a reader sees the old file or the whole new one, and a failed write leaves nothing."""
import os
from pathlib import Path

import pytest

from fastinv.checkpoint import remove_partial_writes
from fastinv.files import atomic_write


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_with_plain_permissions(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "sub" / "results.json"
    with atomic_write(target, "w", durable=durable) as handle:
        handle.write("new ü\n")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert target.read_text(encoding="utf-8") == "new ü\n"
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_killed_write_leaves_a_temporary_that_the_next_run_removes(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    writer = atomic_write(target)
    writer.__enter__().write(b"partial")  # the process dies here: no exit, no replace
    assert not target.exists()
    assert [p.name for p in remove_partial_writes(tmp_path)] != []
    assert list(tmp_path.iterdir()) == []


def test_only_new_files_are_written() -> None:
    with pytest.raises(ValueError, match="mode"):
        with atomic_write("x", "a"):
            pass
