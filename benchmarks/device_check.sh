#!/usr/bin/env bash
# The GPU validation run, for a machine without a package registry whose python3 already has
# fastinv's requirements (torch, torchvision, ...): install fastinv into that python3 itself (no
# virtual environment, which would hide its torch), then run benchmarks/device_check.py, which
# measures every GPU path step by step, each step under its own time budget, and writes
# OUT/device_check.json. Everything together stays under 8 minutes.
#
#   bash benchmarks/device_check.sh OUT [device_check.py options, e.g. --quick, --only step cupy]
#
# PYTHON names another interpreter (default python3); DEVICE_CHECK_SKIP_INSTALL=1 uses the
# fastinv that interpreter already imports. Exits 1 if a step failed or ran out of time.
set -uo pipefail
out=${1:?usage: bash benchmarks/device_check.sh OUT_DIR [device_check.py options]}
shift
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python3}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)

if [ "${DEVICE_CHECK_SKIP_INSTALL:-0}" != 1 ]; then
  echo "== install fastinv into $("$python" -c 'import sys; print(sys.executable)') (no dependencies)"
  if ! timeout 120 "$python" -m pip install --no-deps --no-build-isolation . >"$out/install.log" 2>&1; then
    echo "install failed (the end of $out/install.log below); running fastinv from this source tree instead"
    tail -n 5 "$out/install.log"
    # the installed layout, by links: fastinv/ with pipelines/ and kernels/ inside it (setup.py's package_dir)
    source_root="$out/source"
    rm -rf "$source_root" && mkdir -p "$source_root/fastinv"
    for entry in "$PWD"/fastinv/* "$PWD/pipelines" "$PWD/kernels"; do ln -s "$entry" "$source_root/fastinv/"; done
    export PYTHONPATH="$source_root${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

echo "== device check into $out"
# The steps budget themselves within --time-limit (450 s); this bound only catches the driver itself hanging.
timeout --kill-after=10 465 "$python" benchmarks/device_check.py --out "$out" "$@"
