"""The rerun of a fully cached whole book against another commit, runs alternating.

    python bench/bench_rerun.py [--base REV] [--runs N] [--voice kal16] [--text PATH] [--cache DIR]

Issue 12's goal row "rerun of a fully cached whole book (kal16, about 750 MB
of WAV) <= 1 s", alone and quickly: one cold run of this checkout fills a
result cache (every chunk and the cut plan; ``--cache DIR`` keeps it for the
next invocation, which then skips that run), then ``gflite -voice V -f BOOK
-o out.wav`` is rerun on it, alternating (ABBA...) between ``git archive
REV`` put first on PYTHONPATH and this checkout, so both meet the same load.
Each run writes a new output name after ``sync`` (the last run's writeback
would slow this one's writes), as ``bench_gflite.py``'s "resumed" does, and
every output is checked to be byte-identical to the cold run's. Both sides
run in a virtualenv that sees the checkout as an installed wheel would
(``bench/ab.py``).

It prints each side's median and min wall time and median CPU time (user+sys
of the process tree; a cached rerun hashes and copies on two cores, so CPU
near twice the wall is the most it can overlap).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import tempfile
from pathlib import Path

from corpus import CORPUS
from ab import MAIN, REPO, base_checkout, report, run, wheel_like_python

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD~1", help="the commit to compare with (default: %(default)s; "
                    "'none': this checkout only)")
    ap.add_argument("--runs", type=int, default=5, help="reruns of each side (default: %(default)s)")
    ap.add_argument("--voice", default="kal16", help="(default: %(default)s)")
    ap.add_argument("--text", type=Path, default=CORPUS, help="the book (default: %(default)s)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="result cache to use and keep (default: a fresh one, filled by a cold run)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gflite-rerun-") as tmp:
        work = Path(tmp)
        cache = args.cache or work / "cache"
        python = wheel_like_python(work / "venv")
        env = dict(os.environ, GFLITE_CACHE_DIR=str(cache), GFLITE_CACHE_MAX="64G")
        # Installed gflite runs from bytecode; without it every import compiles (0.15 s).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("GFLITE_CLUSTER", None)
        sides = {"this checkout": dict(env, PYTHONPATH=str(REPO))}
        if args.base != "none":
            base = base_checkout(args.base, work / "base")
            sides = {f"base {args.base}": dict(env, PYTHONPATH=str(base)), **sides}

        def cmd(out: Path) -> list[str]:
            return [str(python), "-c", MAIN, "-q", "-voice", args.voice, "-f", str(args.text), "-o", str(out)]

        reference = work / "reference.wav"
        wall, _ = run(cmd(reference), sides["this checkout"], work)  # fills the cache (or reruns on --cache)
        print(f"{args.text.name}, voice {args.voice}: first run {wall:.2f} s, "
              f"{reference.stat().st_size / 1e6:.0f} MB of WAV; cache {cache}")
        for side_env in sides.values():  # bytecode written, page cache warm
            run(cmd(work / "warm.wav"), side_env, work)
            (work / "warm.wav").unlink()
        walls: dict[str, list[float]] = {name: [] for name in sides}
        cpus: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides.items())
        for i in range(args.runs):
            for name, side_env in order if i % 2 == 0 else order[::-1]:
                out = work / f"rerun-{i}.wav"
                os.sync()
                wall, cpu = run(cmd(out), side_env, work)
                if not filecmp.cmp(out, reference, shallow=False):
                    raise SystemExit(f"{name}: rerun {i}'s output differs from the first run's")
                out.unlink()
                walls[name].append(wall)
                cpus[name].append(cpu)
    report(f"rerun of the fully cached book, {args.runs} alternating runs each (outputs byte-identical):",
           walls, cpus)


if __name__ == "__main__":
    main()
