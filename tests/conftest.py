"""Shared fixtures: a tiny synthetic world and a folder of awkward and broken image files on
disk, each written once per test session, and the `fastinv` command line run in-process."""
import io
import logging
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from awkward_files import write_awkward_folder

from fastinv.cli import main
from fastinv.world import WorldConfig, generate_world

TINY_WORLD = WorldConfig(size=32, per_class=12, test_per_class=6, pose_groups=3, light_groups=3, group_size=4, seed=0, workers=1)


@pytest.fixture(scope="session")
def tiny_world_config() -> WorldConfig:
    """The settings of the `tiny_world` fixture."""
    return TINY_WORLD


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-px world with 12 train / 6 test images per class and 3 pose and 3 light groups."""
    root = tmp_path_factory.mktemp("world")
    generate_world(TINY_WORLD, root, progress=False)
    return root


@dataclass(frozen=True)
class CliResult:
    """What one `fastinv` invocation gave: its exit code and everything it wrote."""

    returncode: int
    stdout: str
    stderr: str


_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _run_in_process(*args: str, cwd: str | os.PathLike | None = None) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    root, ours = logging.getLogger(), logging.getLogger("fastinv")
    handlers, level, our_level, here = root.handlers[:], root.level, ours.level, os.getcwd()
    root.handlers = []  # so the command's own logging set-up writes into `err`, as it would to a terminal
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
        root.handlers, root.level = handlers, level
        ours.setLevel(our_level)  # the command's logging set-up does not outlive it
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
                    if not issubclass(w.category, _HIDDEN_BY_DEFAULT))
    return CliResult(code, out.getvalue(), err.getvalue() + shown)


@pytest.fixture
def fastinv_cli():
    """Run `fastinv ARGS...` in this process and return a CliResult: the real command line, with
    stdout, stderr, log output and the warnings a terminal would show captured, without a
    fresh interpreter's start-up (tests that need one, such as import checks, use a subprocess)."""
    return _run_in_process


@pytest.fixture(scope="session")
def awkward_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of `awkward_files.write_awkward_folder`: classes ok (GOOD) and bad (BAD)."""
    return write_awkward_folder(tmp_path_factory.mktemp("awkward"))
