"""Checks on user-supplied paths that turn OS errors into one-line usage errors, and the default cache folder."""
import os
import tempfile
from pathlib import Path

from fastinv.errors import DataError, UsageError

DEFAULT_CACHE = Path.home() / ".cache" / "fastinv"  # features and generated worlds, unless --cache-dir says otherwise


def writable_dir(path: str | os.PathLike, *, what: str = "--out") -> Path:
    """Create `path` if needed and prove it is writable; raise UsageError naming it otherwise."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


def existing_dir(path: str | os.PathLike, *, what: str = "--data") -> Path:
    """Return `path` as a Path if it is an existing folder; raise DataError naming it otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{what} {folder}: {state}")
    return folder
