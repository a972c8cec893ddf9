#!/usr/bin/env bash
# Set up gflite on a fresh Debian 12 machine, as root: system packages, then a
# virtualenv in .venv with gflite installed.
#
#   scripts/setup.sh          users: runtime only, non-editable install (a wheel)
#   scripts/setup.sh --dev    developers and CI: + native flite (the test oracle),
#                             the pinned wasm toolchain, dask, pytest; editable install
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-user}
export DEBIAN_FRONTEND=noninteractive

# Versions we test against. The toolchain pins make flite.wasm reproducible.
APT_RUNTIME=(python3 python3-venv python3-pip ffmpeg)
APT_DEV=(
  flite=2.2-5
  clang-14=1:14.0.6-12
  lld-14=1:14.0.6-12
  llvm-14=1:14.0.6-12
  wasi-libc=0.0~git20220510.9886d3d-2
  libclang-rt-14-dev-wasm32=1:14.0.6-12
  autotools-dev dpkg-dev make patch sox epubcheck
)

need=("${APT_RUNTIME[@]}")
[ "$mode" = "--dev" ] && need+=("${APT_DEV[@]}")

missing=()
for pkg in "${need[@]}"; do
  name=${pkg%%=*}; want=${pkg#*=}
  have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
  case "$have" in
    "install ok installed "*) [ "$want" = "$pkg" ] || [ "${have##* }" = "$want" ] || missing+=("$pkg") ;;
    *) missing+=("$pkg") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "$mode" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e ".[test,cluster]"
else
  .venv/bin/python -m pip install -q .
fi
