"""2-worker Dask clusters on this machine against the local executor: the cost of
the hardening and of redundancy.

    python bench/bench_cluster.py [--corpus PATH] [--chars N] [--voice V] [--repeat R]

Starts two clusters on 127.0.0.1, each a ``dask scheduler`` and two ``dask
worker`` processes (one thread each, prices 0.01 and 0.02 per CPU-second): one
hardened as the README says (the gflite scheduler and provider preloads,
blocked handlers), one the same without the hardening (a test-only preload
that only publishes the price: the cluster as it was before). Then it times
the ``gflite`` command on the first N characters of the benchmark book, four
ways, in the same run:

- local:   ``gflite -j2`` (two local worker processes)
- cluster: ``gflite --cluster ADDR`` (the same two cores, through the hardened cluster)
- cluster, not hardened: the same through the other cluster
- cluster, redundancy 2: ``--cluster ADDR --redundancy 2`` (every chunk twice)

The requestor's own hardening (its restricted unpickler, capped reads) has no
switch, so both cluster figures include it; the hardened/not-hardened ratio is
the cost of hardening the scheduler and the providers.

Each figure is the median of R runs, in rotating order so that load from other
processes hits all alike, after one untimed warm-up of each. Every run is a
fresh process with an empty result cache (it really synthesises) but a warm
compiled-module cache (no run pays for compiling flite.wasm). The outputs are
checked to be byte-identical. The corpus is read, never copied into the repo.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the test suite's cluster launcher

from cluster import Cluster  # noqa: E402

PRICES = {"w1": 0.01, "w2": 0.02}


def gflite(args: list[str], cache: Path, modules: Path) -> tuple[float, str]:
    """Run the gflite CLI with a fresh result cache beside a copy of the warm module
    cache; (wall seconds, stderr)."""
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(mode=0o700)
    shutil.copytree(modules, cache / "modules")
    env = dict(os.environ, GFLITE_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    env.pop("GFLITE_CLUSTER", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gflite.cli", *args], env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"gflite {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, proc.stderr


def billed(stderr: str) -> float:
    """CPU-seconds in the cost summary (0 for local runs, which print none)."""
    return sum(float(s) for s in re.findall(r"results, ([0-9.]+) CPU-s x", stderr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--chars", type=int, default=60000, help="prefix of the corpus to speak")
    ap.add_argument("--voice", default="kal")
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    if not opts.corpus.is_file():
        raise SystemExit(f"corpus not found: {opts.corpus} (give --corpus PATH)")

    work = Path(tempfile.mkdtemp(prefix="gflite-bench-cluster-"))
    try:
        text = opts.corpus.read_text(encoding="utf-8", errors="replace")[: opts.chars]
        book = work / "book.txt"
        book.write_text(text, encoding="utf-8")
        warm = work / "warm"  # the compiled-module cache every run starts from
        warm.mkdir(mode=0o700)
        env = dict(os.environ, GFLITE_CACHE_DIR=str(warm), PYTHONPATH=str(REPO))
        subprocess.run([sys.executable, "-m", "gflite.cli", "-t", "Warm up.", "-o", "none"],
                       env=env, check=True)
        modules = warm / "modules"

        with Cluster(work / "hardened") as c, Cluster(work / "plain", hardened=False) as plain:
            for cl in (c, plain):
                for name, price in PRICES.items():
                    cl.add_worker(name, price=price, env={"GFLITE_CACHE_DIR": str(warm)})
                cl.wait()
            base = ["-f", str(book), "-voice", opts.voice]
            configs = {
                "local -j2": [*base, "-j", "2"],
                "cluster, 2 workers": [*base, "--cluster", c.address],
                "cluster, not hardened": [*base, "--cluster", plain.address],
                "cluster, --redundancy 2": [*base, "--cluster", c.address, "--redundancy", "2"],
            }
            times: dict[str, list[float]] = {k: [] for k in configs}
            cpu: dict[str, float] = {}
            outputs: dict[str, bytes] = {}
            names = list(configs)
            for round_ in range(opts.repeat + 1):  # round 0: untimed warm-up
                order = names[round_ % len(names):] + names[: round_ % len(names)]
                for name in order:
                    out = work / f"out-{len(outputs)}-{round_}.wav"
                    seconds, err = gflite([*configs[name], "-o", str(out)], work / "cache", modules)
                    data = out.read_bytes()
                    out.unlink()
                    if outputs.setdefault("ref", data) != data:
                        raise SystemExit(f"{name}: output differs from the first run's")
                    if round_:
                        times[name].append(seconds)
                        cpu[name] = billed(err)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    local = statistics.median(times["local -j2"])
    print(f"{len(text)} characters of {opts.corpus.name}, voice {opts.voice}, "
          f"median of {opts.repeat} runs; outputs byte-identical")
    print(f"{'configuration':<26} {'wall s':>8} {'x local':>8} {'CPU-s billed':>13}")
    for name in names:
        t = statistics.median(times[name])
        bill = f"{cpu[name]:.1f}" if cpu.get(name) else "-"
        print(f"{name:<26} {t:8.2f} {t / local:8.2f} {bill:>13}")
    r1 = statistics.median(times["cluster, 2 workers"])
    r0 = statistics.median(times["cluster, not hardened"])
    r2 = statistics.median(times["cluster, --redundancy 2"])
    print(f"cluster overhead: {r1 / local:.2f}x local; hardening costs {r1 / r0:.3f}x the "
          f"unhardened cluster's time; --redundancy 2 costs {r2 / r1:.2f}x the cluster run's time")


if __name__ == "__main__":
    main()
