"""gflite against native flite on a book: wall time, speed-up and peak memory.

The whole goals table of issue 12, every voice, in one command (about 10-15
minutes on 2 cores; slt, rms and awb on a 6,000-word excerpt)::

    python bench/bench_gflite.py

which is the defaults of::

    python bench/bench_gflite.py [--text PATH] [--chars N] [--voices kal,kal16,slt,rms,awb] [--repeat R]
                                 [--runs flite,hand,j1,jN,resumed] [--excerpt-chars 36000]
                                 [--first-audio kal,kal16] [--times 3] [--startup-runs 9]

Shorter runs while developing, e.g. ``--voices kal16 --runs jN,resumed
--times 1 --first-audio kal16 --startup-runs 0``.

For each voice, in one run of this script:

- ``flite``: native ``flite -f book.txt -o out.wav``, one process;
- ``hand-parallel``: the book split at blank lines into one part per core,
  one native flite per part, all at once, then the parts' samples concatenated
  (what a shell script would do; not sample-exact for slt);
- ``gflite -j1`` and ``gflite -jN`` (N = all cores): the real command, each
  with an empty result cache (nothing reused) and a warm compiled-module cache;
- ``resumed``: the rerun of a fully cached book, ``gflite -jN`` again on the
  result cache the previous run left (every chunk and the cut plan cached),
  to a new output name (replacing an old 840 MB WAV costs ext4 another
  0.6-0.9 s to free it, which is the filesystem's, not gflite's); and
  ``--times K`` the same on the book repeated K times (memory must not grow
  with the book);
- ``--first-audio``: seconds until the first 64 KiB of WAV come out of ``-o -``
  on a book never seen (empty result cache, so no cut plan either; warm
  compiled-module cache).

``--excerpt-voices`` (slt, rms, awb) run on ``--excerpt-chars`` of the book only.

Wall time is measured around each whole process tree; peak RSS is the largest
sum of the resident memory of the tree (gflite's parent and its workers, or
all flite processes at once), sampled from /proc every 20 ms; peak PSS the
same with shared pages split between the processes sharing them (forked
workers share much of the parent's memory, which RSS counts twice). The start-up of
``gflite -t "Hello." -o x.wav`` (warm module cache, empty result cache) is the
median of several runs. kal16 output is also checked to equal native flite's.
The corpus is read from outside the repository and never copied into it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

from corpus import CORPUS

REPO = Path(__file__).resolve().parent.parent
FLITE = shutil.which("flite") or "/usr/bin/flite"
# The gflite console script beside this interpreter (the venv's), else `python -m gflite`.
_SCRIPT = Path(sys.executable).with_name("gflite")
GFLITE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gflite"]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- measuring a process tree --------------------------------------------------


def _children_of(pid: int) -> list[int]:
    """``pid``'s children, from /proc/PID/task/*/children: a few small reads,
    where scanning all of /proc cost ~3 ms per sample (14 % of a core at
    50 samples/s, taken from the very cores the contenders run on)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def _children() -> dict[int, list[int]]:
    """The process tree under this process (only the part that is needed)."""
    if not _HAVE_CHILDREN_FILES:
        return _children_by_scan()
    tree: dict[int, list[int]] = {}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        kids = tree[pid] = _children_of(pid)
        todo.extend(kids)
    return tree


def _children_by_scan() -> dict[int, list[int]]:
    """Every process's children, from all of /proc (kernels without the children files)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


_HAVE_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


_OWN_EXE = os.path.realpath(f"/proc/{os.getpid()}/exe")


def _not_yet_exec(pid: int) -> bool:
    """A child between fork (or vfork) and exec still shares this script's
    memory, and counted it all as the contender's (an 0.5 s rerun once "peaked"
    at this script's 819 MB). The contenders never run the bench's own Python
    binary under its own command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read() == _OWN_CMDLINE and os.path.realpath(f"/proc/{pid}/exe") == _OWN_EXE
    except OSError:
        return True


with open(f"/proc/{os.getpid()}/cmdline", "rb") as _f:
    _OWN_CMDLINE = _f.read()


def _rss_pss(pid: int) -> tuple[int, int]:
    """Resident and proportional set size in bytes (PSS splits pages a forked
    worker still shares with its parent, which RSS counts in both)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss, pss


class TreePeak:
    """Samples the summed RSS of this process's children and their descendants."""

    # Every 50 ms: memory peaks last as long as a chunk is in flight (seconds),
    # and sampling must cost the contenders next to nothing (1-2 % of a core).
    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0  # summed RSS
        self.peak_pss = 0
        self.largest = 0  # the largest single process's RSS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            tree = _children()
            todo, rss, pss = list(tree.get(me, [])), 0, 0
            while todo:
                pid = todo.pop()
                if _not_yet_exec(pid):
                    continue
                r, p = _rss_pss(pid)
                rss, pss = rss + r, pss + p
                self.largest = max(self.largest, r)
                todo.extend(tree.get(pid, []))
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(commands: list[list[str]], env: dict[str, str] | None = None) -> tuple[float, tuple[int, int, int]]:
    """Run the commands at once: wall seconds until all are done, and the
    tree's peak (summed RSS, summed PSS, largest process's RSS) in bytes."""
    # Start from a clean page cache: the runs before this one left up to gigabytes
    # of WAV waiting for writeback, which would slow this one's writes (a cached
    # rerun after a cold run took 3-4.7 s instead of 1.4 s).
    os.sync()
    with TreePeak() as peak:
        started = time.perf_counter()
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
        for p, c in zip(procs, commands):
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"failed ({p.returncode}): {' '.join(c)}\n{err.decode(errors='replace')}")
        wall = time.perf_counter() - started
    return wall, (peak.peak, peak.peak_pss, peak.largest)


def samples(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


# --- the contenders ---------------------------------------------------------------


def split_at_blank_lines(text: str, parts: int) -> list[str]:
    """About equal parts, each cut just after a blank line."""
    cuts, pos = [], 0
    for k in range(1, parts):
        want = len(text) * k // parts
        at = text.find("\n\n", max(want, pos))
        crlf = text.find("\r\n\r\n", max(want, pos))
        ends = [i + n for i, n in ((at, 2), (crlf, 4)) if i >= 0]
        if not ends:
            break
        pos = min(ends)
        cuts.append(pos)
    edges = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:]) if text[a:b]]


def native_single(book: Path, voice: str, work: Path) -> tuple[float, tuple[int, int, int], Path]:
    out = work / f"native-{voice}.wav"
    wall, rss = timed([[FLITE, "-voice", voice, "-f", str(book), "-o", str(out)]])
    return wall, rss, out


def hand_parallel(book: Path, voice: str, work: Path, n: int) -> tuple[float, tuple[int, int, int], Path]:
    text = book.read_text("latin-1")
    parts = split_at_blank_lines(text, n)
    commands = []
    for i, part in enumerate(parts):
        src = work / f"part{i}.txt"
        src.write_text(part, "latin-1")
        commands.append([FLITE, "-voice", voice, "-f", str(src), "-o", str(work / f"part{i}.wav")])
    started = time.perf_counter()
    wall, rss = timed(commands)
    out = work / f"hand-{voice}.wav"
    with wave.open(str(out), "wb") as w:
        for i in range(len(parts)):
            rate, pcm = samples(work / f"part{i}.wav")
            if i == 0:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
            w.writeframes(pcm)
    return time.perf_counter() - started, rss, out


def gflite(
    book: Path, voice: str, work: Path, workers: int, env: dict[str, str], resume: bool = False
) -> tuple[float, tuple[int, int, int], Path]:
    """gflite on the book: from an empty result cache, or (``resume``) from the
    one the previous run left (every chunk cached)."""
    if not resume:
        shutil.rmtree(Path(env["GFLITE_CACHE_DIR"]) / "results", ignore_errors=True)
    # Named for the book too: the book x3 runs must not overwrite the single book's outputs before they are checked.
    out = work / f"gflite-{book.stem}-{voice}-j{workers}{'-resumed' if resume else ''}.wav"
    out.unlink(missing_ok=True)  # time gflite, not the filesystem freeing the last run's file
    wall, rss = timed([[*GFLITE, "-q", "-voice", voice, "-j", str(workers), "-f", str(book), "-o", str(out)]], env)
    return wall, rss, out


def first_audio(book: Path, voice: str, env: dict[str, str], workers: int, want: int = 64 << 10) -> float:
    """Seconds from starting ``gflite -o -`` (empty result cache) until ``want``
    bytes of WAV have come out of its stdout; the run is then stopped."""
    shutil.rmtree(Path(env["GFLITE_CACHE_DIR"]) / "results", ignore_errors=True)
    os.sync()
    started = time.perf_counter()
    proc = subprocess.Popen([*GFLITE, "-q", "-voice", voice, "-j", str(workers), "-f", str(book), "-o", "-"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    got = 0
    assert proc.stdout is not None
    while got < want:
        block = proc.stdout.read1(want - got)
        if not block:
            break
        got += len(block)
    seconds = time.perf_counter() - started
    # Stop it as a player would: close the pipe, so gflite cleans up after
    # itself (a SIGKILL would leave its spool and attempt directories behind).
    proc.stdout.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child; its workers die with it (parent-death signal)
        proc.wait()
    return seconds


def startup(work: Path, env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        shutil.rmtree(Path(env["GFLITE_CACHE_DIR"]) / "results", ignore_errors=True)
        wall, _ = timed([[*GFLITE, "-t", "Hello.", "-o", str(work / "x.wav")]], env)
        times.append(wall)
    return times


# --- main -------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", type=Path, default=CORPUS, help="the book (default: %(default)s)")
    ap.add_argument("--chars", type=int, default=None, help="use only a prefix of about N characters")
    ap.add_argument("--voices", default="kal,kal16,slt,rms,awb", help="comma-separated (default: %(default)s)")
    ap.add_argument("--startup-runs", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every contender R times, interleaved, and keep the fastest (the machine may be shared)")
    ap.add_argument("--runs", default="flite,hand,j1,jN,resumed",
                    help="which of flite, hand, j1, jN, resumed (jN again from its warm result cache) "
                         "to run (default: %(default)s)")
    ap.add_argument("--excerpt-voices", default="slt,rms,awb",
                    help="voices run on an excerpt only (default: %(default)s)")
    ap.add_argument("--excerpt-chars", type=int, default=36000,
                    help="the excerpt's length for --excerpt-voices (default: %(default)s, about 6,000 words; "
                         "0: the whole text)")
    ap.add_argument("--first-audio", default="kal,kal16",
                    help="voices whose time to the first 64 KiB of WAV on -o - is measured (e.g. kal,kal16)")
    ap.add_argument("--times", type=int, default=3,
                    help="also run the jN and resumed runs on the book repeated this many times "
                         "(memory must stay flat)")
    ap.add_argument("--times-voices", default="kal16", help="voices run on the repeated book (default: %(default)s)")
    args = ap.parse_args()

    n = cores()
    runs = set(args.runs.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-gflite-") as tmp:
        work = Path(tmp)
        raw = args.text.read_bytes()
        if args.chars is not None and args.chars < len(raw):
            # End at a paragraph break, as a real excerpt would.
            cut = raw.rfind(b"\n\n", 0, args.chars)
            raw = raw[: cut + 2 if cut > args.chars // 2 else args.chars]
        book = work / "book.txt"
        book.write_bytes(raw)
        excerpt = work / "excerpt.txt"
        if args.excerpt_chars and args.excerpt_chars < len(raw):
            cut = raw.rfind(b"\n\n", 0, args.excerpt_chars)
            excerpt.write_bytes(raw[: cut + 2 if cut > args.excerpt_chars // 2 else args.excerpt_chars])
        else:
            excerpt.write_bytes(raw)
        slow = set(args.excerpt_voices.split(","))
        longer = work / "book-times.txt"
        longer.write_bytes(raw * max(1, args.times))
        # A cap above the largest run (the book repeated), so a resumed run finds every chunk.
        env = dict(os.environ, GFLITE_CACHE_DIR=str(work / "cache"), GFLITE_CACHE_MAX="64G")
        # gflite as installed runs from bytecode (pip compiles it); a shell with
        # PYTHONDONTWRITEBYTECODE set would compile all of it at every start (0.15 s).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # Warm the compiled-module cache (and the page cache) once.
        timed([[*GFLITE, "-q", "-t", "Warm up.", "-o", str(work / "warm.wav")]], env)

        print(f"text: {args.text} ({len(raw)} bytes{', a prefix' if args.chars else ''}; "
              f"{', '.join(sorted(slow))}: the first {excerpt.stat().st_size} bytes); {n} cores; "
              f"python {sys.version.split()[0]}")
        header = (f"{'voice':6} {'run':22} {'wall s':>8} {'x flite':>8} {'x hand':>8} {'tree RSS MB':>12} "
                  f"{'tree PSS MB':>12} {'largest MB':>11}  check")
        print(header)
        print("-" * len(header))
        for voice in args.voices.split(","):
            text = excerpt if voice in slow else book
            contenders = {
                "flite": lambda: native_single(text, voice, work),
                "hand-parallel": lambda: hand_parallel(text, voice, work, n),
                "gflite -j1": lambda: gflite(text, voice, work, 1, env),
                f"gflite -j{n}": lambda: gflite(text, voice, work, n, env),
                f"gflite -j{n} resumed": lambda: gflite(text, voice, work, n, env, resume=True),
            }
            chosen = {"flite": "flite", "hand-parallel": "hand", "gflite -j1": "j1", f"gflite -j{n}": "jN",
                      f"gflite -j{n} resumed": "resumed"}
            if args.times > 1 and voice in args.times_voices.split(","):
                contenders[f"-j{n} book x{args.times}"] = lambda: gflite(longer, voice, work, n, env)
                contenders[f"-j{n} x{args.times} resumed"] = lambda: gflite(longer, voice, work, n, env, resume=True)
                chosen[f"-j{n} book x{args.times}"] = "jN"
                chosen[f"-j{n} x{args.times} resumed"] = "resumed"
            results: dict[str, tuple[float, tuple[int, int, int], Path]] = {}
            for _ in range(max(1, args.repeat)):
                for name, contender in contenders.items():
                    if chosen[name] not in runs:
                        continue
                    wall, (rss, pss, big), out = contender()
                    if name in results:  # fastest wall time, highest memory
                        old_wall, (old_rss, old_pss, old_big), _ = results[name]
                        wall, rss, pss, big = min(wall, old_wall), max(rss, old_rss), max(pss, old_pss), \
                            max(big, old_big)
                    results[name] = (wall, (rss, pss, big), out)
            base = results["flite"][0] if "flite" in results else None
            hand = results["hand-parallel"][0] if "hand-parallel" in results else None
            ref = samples(results["flite"][2]) if "flite" in results else None
            for name, (wall, (rss, pss, big), out) in results.items():
                check = ""
                if "x" + str(args.times) in name:
                    check = "(book repeated)"
                elif name.startswith("gflite") and ref is not None:
                    same = samples(out) == ref
                    check = "same samples as flite" if same else (
                        "differs (expected: noise state per utterance)" if voice not in ("kal", "kal16") else "DIFFERS")
                other = "x" + str(args.times) in name
                vs_flite = f"{base / wall:7.2f}x" if base and not other else f"{'-':>8}"
                vs_hand = f"{hand / wall:7.2f}x" if hand and not other else f"{'-':>8}"
                print(f"{voice:6} {name:22} {wall:8.2f} {vs_flite} {vs_hand} "
                      f"{rss / 2**20:12.0f} {pss / 2**20:12.0f} {big / 2**20:11.0f}  {check}", flush=True)
            if voice in args.first_audio.split(","):
                first = first_audio(text, voice, env, n)
                print(f"{voice:6} {'first 64 KiB on -o -':22} {first:8.2f}", flush=True)
        if args.startup_runs < 1:
            return
        times = startup(work, env, args.startup_runs)
        print(f"\nstart-up, gflite -t \"Hello.\" -o x.wav (warm module cache): median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)")


if __name__ == "__main__":
    main()
