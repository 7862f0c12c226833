"""benchmarks/device_check.sh dry-runs on a machine without CUDA: the GPU steps are skipped with
the reason, the JSON has every step; --device cpu runs GPU steps on the CPU at tiny sizes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HOST_STEPS = {"environment", "data"}


def _device_check(out: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_SKIP_INSTALL": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(out), "--quick", *options],
                          capture_output=True, text=True, timeout=900, env=env)
    report = out / "device_check.json"
    assert report.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return done, json.loads(report.read_text())


@pytest.mark.slow
def test_without_cuda_every_gpu_step_is_skipped_with_the_reason(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this test covers the machine without CUDA")
    done, report = _device_check(tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    steps = report["steps"]
    assert list(steps)[:2] == ["environment", "data"] and {"loader", "step", "compile", "cupy", "table2"} <= set(steps)
    assert all(steps[name]["status"] == "PASS" for name in HOST_STEPS)
    assert report["environment"]["torch"] == torch.__version__ and report["environment"]["cuda_available"] is False
    assert steps["data"]["figures"]["images"] == len(list((tmp_path / "out" / "data" / "jpegs").rglob("*.jpg"))) > 0
    skipped = [s for name, s in steps.items() if name not in HOST_STEPS]
    assert all(s["status"] == "SKIP" and "no CUDA device" in s["detail"] for s in skipped)
    assert report["summary"] == {} and "| compile" in done.stdout


@pytest.mark.slow
def test_gpu_steps_run_on_the_cpu_when_asked(tmp_path):
    done, report = _device_check(tmp_path / "out", "--device", "cpu", "--only", "features", "deterministic", "syncs")
    steps = report["steps"]
    assert set(steps) == HOST_STEPS | {"features", "deterministic", "syncs"}
    assert steps["features"]["status"] == "PASS" and steps["features"]["figures"]["images_per_s"] > 0
    assert steps["deterministic"]["status"] == "PASS", steps["deterministic"]["detail"]
    assert steps["syncs"]["status"] == "SKIP" and "needs CUDA" in steps["syncs"]["detail"]
    assert done.returncode == 0 and report["summary"]["features_images_per_s"] > 0
