"""What the A/B benchmarks (bench_startup.py, bench_rerun.py) share: this
checkout against another commit, runs alternating so both sides meet the same
load, each side in a virtualenv that sees the code as an installed wheel would.

A dev checkout is installed editable, and the editable install's import hook
(run by ``site`` at every start) costs about 25 ms that no installed user pays.
:func:`wheel_like_python` makes a bare virtualenv instead that lists the
checkout and the dev virtualenv's site-packages in a ``.pth`` file: a ``.pth``
line adds a path, and the ``.pth`` files inside that path (the hook among them)
are not run. A side's code is chosen by PYTHONPATH, which comes before both.
"""
from __future__ import annotations

import resource
import site
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The console script's code, run by a chosen interpreter.
MAIN = "import sys; from gflite.cli import main; sys.argv[0] = 'gflite'; sys.exit(main())"


def wheel_like_python(venv: Path) -> Path:
    """Make the virtualenv at ``venv``; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "gflite-bench.pth").write_text("\n".join([str(REPO), *deps]) + "\n")
    return venv / "bin" / "python"


def base_checkout(rev: str, dest: Path) -> Path:
    """gflite and wasm_bin as they are at ``rev``, unpacked in ``dest`` (for PYTHONPATH)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "gflite", "wasm_bin"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one run, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode(errors='replace')}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def report(title: str, walls: dict[str, list[float]], cpus: dict[str, list[float]]) -> None:
    """Each side's median and extremes of wall time, and its median CPU time."""
    print(title)
    for name, w in walls.items():
        print(f"  {name:24} wall median {statistics.median(w):.3f} s (min {min(w):.3f}, max {max(w):.3f}), "
              f"CPU median {statistics.median(cpus[name]):.3f} s")
