"""Start-up of ``gflite -t "Hello." -o x.wav`` against another commit, runs alternating.

    python bench/bench_startup.py [--base REV] [--runs N] [--no-bytecode]

Both sides run the console script's code (``gflite.cli.main``) with warm
compiled-module cache and empty result cache, in a virtualenv that sees this checkout as an installed wheel would
(``bench/ab.py``: no editable import hook). The base comes
from ``git archive REV``, put first on PYTHONPATH; this checkout is found through
the ``.pth``. Runs alternate (ABAB...) so both meet the same load; it prints
each side's median wall time and median CPU time (user+sys of the process
tree, less sensitive to a shared machine's load).

``--no-bytecode``: PYTHONDONTWRITEBYTECODE=1 and no ``__pycache__`` for
gflite's own modules on either side (every import compiles); without it,
bytecode is written and reused, as an installed wheel's would be.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ab import MAIN, REPO, base_checkout, report, run, wheel_like_python

def _drop_bytecode(root: Path) -> None:
    for cache in (root / "gflite").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD~1", help="the commit to compare with (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=15, help="runs of each side (default: %(default)s)")
    ap.add_argument("--no-bytecode", action="store_true", help="PYTHONDONTWRITEBYTECODE=1, no __pycache__")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gflite-startup-") as tmp:
        work = Path(tmp)
        base = base_checkout(args.base, work / "base")
        python = wheel_like_python(work / "venv")
        env = dict(os.environ, GFLITE_CACHE_DIR=str(work / "cache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("GFLITE_CLUSTER", None)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        sides = {f"base {args.base}": dict(env, PYTHONPATH=str(base)), "this checkout": env}
        cmd = [str(python), "-c", MAIN, "-t", "Hello.", "-o", str(work / "x.wav")]
        for side_env in sides.values():  # compile flite.wasm into the module cache once
            subprocess.run(cmd, env=side_env, cwd=work, check=True, stderr=subprocess.DEVNULL)
        wall: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides.items())
        for i in range(args.runs):
            for name, side_env in order if i % 2 == 0 else order[::-1]:
                if args.no_bytecode:
                    _drop_bytecode(base)
                    _drop_bytecode(REPO)
                shutil.rmtree(work / "cache" / "results", ignore_errors=True)
                w, c = run(cmd, side_env, work)
                wall[name].append(w)
                cpu[name].append(c)
    mode = "PYTHONDONTWRITEBYTECODE=1, no __pycache__" if args.no_bytecode else "bytecode written and reused"
    report(f"start-up of gflite -t \"Hello.\" -o x.wav, {args.runs} alternating runs each, {mode}:", wall, cpu)


if __name__ == "__main__":
    main()
