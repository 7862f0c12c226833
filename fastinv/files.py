"""Atomic file writes: what every long job and every cache uses to leave whole files only."""
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, durable: bool = True) -> Iterator[IO]:
    """Write `path` so that readers see its old content or its whole new content, never a part.

    Yields a file opened with `mode` ("wb" or "w", UTF-8) on a temporary file beside `path` (with
    the permissions a plain open would give); when the block ends without an error, the file
    replaces `path`. On an error the temporary file is removed, `path` is left as it was and the
    error propagates. `durable` also flushes the file and its folder to the disk, so the new
    content survives a power cut; a cache that checks its entries can do without.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes new files: mode 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
