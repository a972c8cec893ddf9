"""A virtualenv for benchmarks that sees this checkout as an installed wheel would.

A dev checkout is installed editable, and the editable install's import hook
(run by ``site`` at every start) costs about 25 ms that no installed user pays.
This bare virtualenv instead lists the checkout and the dev virtualenv's
site-packages in a ``.pth`` file: a ``.pth`` line adds a path, and the ``.pth``
files inside that path (the hook among them) are not run.
"""
from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wheel_like_python(venv: Path) -> Path:
    """Make the virtualenv at ``venv``; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "gflite-bench.pth").write_text("\n".join([str(REPO), *deps]) + "\n")
    return venv / "bin" / "python"
