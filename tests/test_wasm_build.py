"""CI's rebuild-and-compare check for flite.wasm, and the wheel that ships it."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from gflite import flitewasm

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rebuild_gives_the_pinned_sha256(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        ["bash", str(REPO / "wasm_bin" / "build.sh"), str(out)],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = out / "flite.wasm"
    digest = sha256_file(built)
    # build.sh prints the digest as its only stdout line.
    assert proc.stdout.split() == [digest]
    assert digest == flitewasm.PINNED_SHA256, (
        f"rebuilt flite.wasm has sha256 {digest}, pinned {flitewasm.PINNED_SHA256}: "
        "the toolchain or source differs from the pinned one"
    )
    # The build directory was cleaned up.
    assert not list(tmp_path.glob("flite-wasm.*"))


def _copy_source_tree(dest: Path) -> Path:
    # Build from a copy so the checkout gets no build/ or egg-info.
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "_build",
        ".pytest_cache", "*.cwasm",
    )
    src = dest / "src"
    shutil.copytree(REPO, src, ignore=ignore)
    return src


def test_wheel_ships_flite_wasm_and_finds_it(tmp_path: Path) -> None:
    src = _copy_source_tree(tmp_path)
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel, = dist.glob("gflite-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {
            "gflite/flitewasm.py",
            "gflite/wasm_bin/flite.wasm",
            "gflite/wasm_bin/flite.wasm.sha256",
            "gflite/wasm_bin/COPYING.flite",
        } <= names
        shipped = hashlib.sha256(zf.read("gflite/wasm_bin/flite.wasm")).hexdigest()
    assert shipped == flitewasm.PINNED_SHA256
    # pyproject lists packages by hand; every module of the tree must be in the wheel.
    modules = {p.relative_to(src).as_posix() for p in (src / "gflite").rglob("*.py")}
    missing = sorted(modules - names)
    assert not missing, f"not in the wheel (add their packages to pyproject.toml): {missing}"
    # Build inputs stay out of it.
    assert not any(n.endswith(("build.sh", ".c", ".h")) for n in names)

    # Installed from the wheel, far from the checkout, flitewasm finds its binary.
    # No PYTHONPATH, so neither pip nor the import can see the checkout.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    code = "from gflite import flitewasm as f; p = f.program(); print(p.path); print(p.sha256)"
    proc = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=clean_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    path, digest = proc.stdout.split()
    assert Path(path).is_relative_to(env_dir)
    assert Path(path).name == "flite.wasm"
    assert digest == flitewasm.PINNED_SHA256
