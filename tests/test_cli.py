"""The `fastinv` command line: help, one-line errors with exit code 2, light start-up, commands
that do not import each other, and `world` end to end."""
import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fastinv.cli import main
from fastinv.commands import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess:
    """Run the installed command from a neutral folder, so the source tree cannot shadow it."""
    return subprocess.run([sys.executable, "-m", "fastinv", *args], capture_output=True, text=True,
                          timeout=120, cwd=tempfile.gettempdir())


def test_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert "not built yet" not in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: fastinv" in capsys.readouterr().out


def test_parser_and_usage_errors_import_no_torch() -> None:
    probe = ("import sys\nfrom fastinv.cli import main\ntry:\n    main(['pretrain', '--batch-size', 'x'])\n"
             "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=tempfile.gettempdir())
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert result.stderr.count("\n") == 1 and "invalid int value" in result.stderr


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_no_command_and_no_profiler_imports_a_command() -> None:
    package = Path(__file__).resolve().parents[1] / "fastinv"
    for path in [*(package / "commands").glob("*.py"), *(package / "profiling").glob("*.py"),
                 package / "train" / "flags.py"]:
        commands = [name for name in _imported_modules(path) if name.startswith("fastinv.commands")]
        assert not commands, f"{path} imports {commands}"


def test_pipelines_and_kernels_import_nothing_above_them() -> None:
    root = Path(__file__).resolve().parents[1]
    allowed = ("fastinv.pipelines", "fastinv.kernels", "fastinv.errors", "fastinv.log", "fastinv.registry")
    for folder in ("pipelines", "kernels"):
        for path in (root / folder).rglob("*.py"):
            above = [name for name in _imported_modules(path)
                     if name.startswith("fastinv") and not name.startswith(allowed)]
            assert not above, f"{path} imports {above}"


def test_unknown_command_is_one_line_exit_2() -> None:
    result = _run("frobnicate")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid choice" in result.stderr


@pytest.mark.parametrize("flags, needle", [
    (["--size", "0"], "size must be at least 16"),
    (["--per-class", "-3"], "per-class must be at least 1"),
    (["--size", "abc"], "invalid int value"),
])
def test_world_bad_values(tmp_path: Path, flags: list[str], needle: str) -> None:
    result = _run("world", "--out", str(tmp_path / "w"), *flags)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr


def test_world_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _run("world", "--out", str(blocker / "sub"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot write there" in result.stderr


def test_world_refuses_non_world_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    result = _run("world", "--out", str(tmp_path), "--overwrite")
    assert result.returncode == 2 and "refusing" in result.stderr
    assert (tmp_path / "keep.txt").exists()


def test_world_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["world", "--out", str(out), "--size", "24", "--per-class", "3", "--test-per-class", "1",
            "--groups", "1", "--group-size", "3", "--no-progress"]
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"]["trainset"] == 3 * 7
    assert np.load(out / "trainset" / "latents_tee.npy").shape == (3, 8)
    again = _run(*args)
    assert again.returncode == 2 and "not empty" in again.stderr
    assert _run(*args, "--overwrite").returncode == 0


@pytest.mark.parametrize("make, needle", [
    ([], "--preset paper needs ImageNet-1k"),
    (["train"], "val: does not exist"),
    (["val"], "train: does not exist"),
])
def test_reproduce_paper_needs_imagenet_train_and_val(tmp_path: Path, make: list[str], needle: str,
                                                     fastinv_cli) -> None:
    for name in make:
        (tmp_path / "imagenet" / name).mkdir(parents=True)
    flags = ["--imagenet", str(tmp_path / "imagenet")] if make else []
    result = fastinv_cli("reproduce", "--preset", "paper", *flags, "--out", str(tmp_path / "out"),
                  "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
