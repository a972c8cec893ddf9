"""The ``gflite`` command: flite's flags, pipes, formats, progress, errors and Ctrl-C.

In-process runs call ``gflite.cli.main`` (exit code via SystemExit); anything
about stdin, stdout, signals or terminals runs the real command in a subprocess.
Audio is checked against native flite, the oracle.
"""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from clirun import FLITE, GFLITE, gflite, native, ok, pcm
from gflite import cli
from gflite.errors import InputError, Interrupted, OutputError, UsageError
from gflite.flitewasm import VOICES

ROOT = Path(__file__).resolve().parent.parent
LONG = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
HELLO = "Hello there. This is gflite speaking."
BOOK = "A short book.\r\n\r\nIt has two paragraphs! Does it? Yes: it does.\r\n"


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_bytes(BOOK.encode())
    return path


# --- flite's command line ----------------------------------------------------------


def test_input_and_output_as_flite_spells_them(capsys, tmp_path: Path, book: Path) -> None:
    want = native(tmp_path, "-voice", "kal16", "-f", str(book))
    for i, args in enumerate([
        ("-voice", "kal16", "-f", str(book), "-o", "{out}"),
        ("-voice", "kal16", str(book), "{out}"),  # positional: a file that exists
        ("--voice", "kal16", str(book), "-o", "{out}"),
        ("-o", "{out}", "-voice=kal16", "-f", str(book)),
    ]):
        out = tmp_path / f"out{i}.wav"
        ok(capsys, *(a.replace("{out}", str(out)) for a in args))
        assert pcm(out) == want, args


def test_positional_text_is_said_like_t(capsys, tmp_path: Path) -> None:
    want = native(tmp_path, "-voice", "kal16", "-t", HELLO)
    ok(capsys, "-voice", "kal16", HELLO, str(tmp_path / "a.wav"))
    ok(capsys, "-voice", "kal16", "-t", HELLO, str(tmp_path / "b.wav"))
    assert pcm(tmp_path / "a.wav") == pcm(tmp_path / "b.wav") == want


def test_default_voice_is_kal(capsys, tmp_path: Path) -> None:
    ok(capsys, "-t", HELLO, "-o", str(tmp_path / "a.wav"))
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-t", HELLO)


def test_feature_flags_match_flite(capsys, tmp_path: Path) -> None:
    flags = ["--setf", "duration_stretch=1.4", "--seti", "int_f0_target_mean=150", "-s", "int_f0_target_stddev=30"]
    want = native(tmp_path, *flags, "-voice", "kal16", "-t", HELLO)
    plain = native(tmp_path, "-voice", "kal16", "-t", HELLO)
    assert len(want[1]) > len(plain[1]) * 1.2  # the flags did something
    ok(capsys, *flags, "-voice", "kal16", "-t", HELLO, "-o", str(tmp_path / "a.wav"))
    assert pcm(tmp_path / "a.wav") == want


def test_ssml_matches_flite(capsys, tmp_path: Path) -> None:
    doc = tmp_path / "doc.ssml"
    rest = '<prosody rate="0.7">Slowly now.</prosody>\n\nSecond part.</speak>\n'
    doc.write_text("<speak>Good morning. " + rest)
    ok(capsys, "-ssml", "-voice", "kal16", "-f", str(doc), "-o", str(tmp_path / "a.wav"))
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-ssml", "-voice", "kal16", "-f", str(doc))
    # A <break> is honoured (flite ignores its time): flite's audio of each side, 0.5 s of zeros between.
    doc.write_text('<speak>Good morning. <break time="500ms"/> ' + rest)
    ok(capsys, "-ssml", "-voice", "kal16", "-f", str(doc), "-o", str(tmp_path / "b.wav"))
    (tmp_path / "one.ssml").write_text("<speak>Good morning. </speak>\n")
    (tmp_path / "two.ssml").write_text("<speak> " + rest)
    rate, one = native(tmp_path, "-ssml", "-voice", "kal16", "-f", str(tmp_path / "one.ssml"))
    two = native(tmp_path, "-ssml", "-voice", "kal16", "-f", str(tmp_path / "two.ssml"))[1]
    assert pcm(tmp_path / "b.wav") == (rate, one + bytes(2 * rate // 2) + two)


def test_voice_file_equals_builtin_voice(capsys, tmp_path: Path) -> None:
    vox = tmp_path / "slt.flitevox"
    subprocess.run([FLITE, "-voice", "slt", "-voicedump", str(vox)], check=True)
    text = "A voice from a file. It sounds the same!"
    ok(capsys, "-voice", "slt", "-t", text, "-o", str(tmp_path / "a.wav"))
    ok(capsys, "-voice", str(vox), "-t", text, "-o", str(tmp_path / "b.wav"))
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-voice", "slt", "-t", text)


def test_list_voices_version_and_help(capsys) -> None:
    code, out, _ = gflite(capsys, "-lv")
    assert code == 0 and out.split()[2:] == list(VOICES)
    code, out, _ = gflite(capsys, "--version")
    assert code == 0 and out.startswith("gflite ") and "flite-2.2" in out
    for flag in ("-h", "--help", "-?"):
        code, out, _ = gflite(capsys, flag)
        assert code == 0
        for option in ("-voice", "-lv", "--setf", "-ssml", "--subtasks", "--workers", "--timeout", "-q"):
            assert option in out


def test_summary_and_quiet(capsys, tmp_path: Path, book: Path) -> None:
    err = ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "a.wav"))
    assert re.fullmatch(r"gflite: wrote .*a\.wav: [0-9.]+ s of audio, 1 chunk \(\d from cache\), .*\n", err), err
    assert ok(capsys, "-q", "-voice", "kal16", str(book), str(tmp_path / "b.wav")) == ""
    err = ok(capsys, "-v", "-voice", "kal16", "--subtasks", "2", str(book), str(tmp_path / "c.wav"))
    assert "characters (ascii) in 2 chunks" in err and "2 chunks" in err.splitlines()[-1]


def test_wav_past_4_gib_is_kept_and_explained(capsys, tmp_path: Path, book: Path, monkeypatch) -> None:
    from gflite import stitching

    ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "ref.wav"))
    # The book's audio stands in for 37 hours: the limit is lowered, not the audio raised.
    monkeypatch.setattr(stitching, "MAX_WAV_DATA_BYTES", 1000)
    err = ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "big.wav"))
    assert "big.wav is over the 4 GiB that WAV sizes can state" in err and "length unknown" in err, err
    big, ref = (tmp_path / "big.wav").read_bytes(), (tmp_path / "ref.wav").read_bytes()
    assert big[44:] == ref[44:] and big[40:44] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize("ext, codec", [("mp3", "mp3"), ("ogg", "vorbis"), ("flac", "flac")])
def test_encoded_outputs(capsys, tmp_path: Path, book: Path, ext: str, codec: str) -> None:
    ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "ref.wav"))
    rate, samples = pcm(tmp_path / "ref.wav")
    out = tmp_path / f"book.{ext}"
    ok(capsys, "-voice", "kal16", str(book), "-o", str(out))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", str(out)],
        check=True, capture_output=True, text=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], int(stream["sample_rate"]), stream["channels"]) == (codec, rate, 1)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "s16le", "-"],
                             check=True, capture_output=True).stdout
    assert len(decoded) == len(samples)  # the duration, to the sample (gapless mp3 and ogg)
    if ext == "flac":
        assert decoded == samples  # lossless
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


def test_no_output_plays_it(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As flite: without an output the audio goes to the player (here a stand-in aplay)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    player = bin_dir / "aplay"
    player.write_text(f'#!/bin/sh\ncat > "{tmp_path}/played.wav"\n')
    player.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    ok(capsys, "-voice", "kal16", "-t", HELLO)
    assert pcm(tmp_path / "played.wav") == native(tmp_path, "-voice", "kal16", "-t", HELLO)

    player.write_text("#!/bin/sh\nexit 3\n")  # a player that fails (no sound card)
    code, _, err = gflite(capsys, "-voice", "kal16", "-t", HELLO)
    assert code == OutputError.exit_code and err.startswith("gflite: error: the audio player aplay failed")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = gflite(capsys, "-voice", "kal16", "-t", HELLO)
    assert code == OutputError.exit_code and "no audio player" in err


# --- errors: one line, a documented exit code, no traceback -----------------------


def _junk(tmp: Path) -> str:
    path = tmp / "junk.txt"
    path.write_bytes(bytes(range(256)) * 20)
    return str(path)


def _empty(tmp: Path) -> str:
    path = tmp / "empty.txt"
    path.write_bytes(b"  \r\n\n")
    return str(path)


ERRORS = [
    (["-f", "{tmp}/missing.txt", "-o", "{tmp}/x.wav"], InputError, "input file not found"),
    (["{tmp}/missing.txt", "{tmp}/x.wav"], InputError, "input file not found"),  # looks like a path
    (["-f", "{empty}", "-o", "{tmp}/x.wav"], InputError, "is empty"),
    (["-t", "", "-o", "{tmp}/x.wav"], InputError, "is empty"),
    (["-f", "{junk}", "-o", "{tmp}/x.wav"], InputError, "looks binary"),
    (["-f", "{tmp}", "-o", "{tmp}/x.wav"], InputError, "is a directory"),
    (["-voice", "nosuch", "-t", "Hi.", "-o", "{tmp}/x.wav"], InputError, "unknown voice 'nosuch'"),
    (["-voice", "{tmp}/none.flitevox", "-t", "Hi.", "-o", "{tmp}/x.wav"], InputError, "cannot read voice file"),
    (["--setf", "duration_stretch=fast", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "is not a number"),
    (["--seti", "x=1.5", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "is not an integer"),
    (["--sets", "novalue", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "takes NAME=VALUE"),
    (["-t", "Hi.", "-o", "{tmp}/nodir/x.wav"], OutputError, "output directory does not exist"),
    (["-t", "Hi.", "-o", "/sys/gflite-test.wav"], OutputError, "cannot write to /sys"),
    (["{book}", "{book}"], UsageError, "is the input file"),  # flite would write WAV over the book
    (["-pw", "-t", "Hi.", "-o", "-"], UsageError, "-pw prints on stdout, where -o - writes WAV"),
    (["-voice", "slt", "-voicedump", "{tmp}/v.flitevox"], UsageError, "-voicedump is not supported by gflite"),
    (["-p", "hh ay", "-o", "{tmp}/x.wav"], UsageError, "-p is not supported by gflite"),
    (["-l", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "-l is not supported by gflite"),
    (["-voice", "awb_time", "-t", "Hi.", "-o", "{tmp}/x.wav"], InputError, "'awb_time' is not built into flite.wasm"),
    (["-add_lex", "{tmp}/none.lex", "-t", "Hi.", "-o", "{tmp}/x.wav"], InputError, "cannot read lexicon addenda"),
    (["-t", "Hi.", "-o", "{tmp}"], OutputError, "is a directory"),
    (["-t", "Hi.", "-f", "{book}", "-o", "{tmp}/x.wav"], UsageError, "not both"),
    (["-t", "Hi.", "-o", "{tmp}/x.wav", "{tmp}/y.wav"], UsageError, "two outputs"),
    (["{book}", "{tmp}/x.wav", "extra"], UsageError, "unexpected extra argument"),
    (["--timeout", "soon", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "--timeout takes seconds"),
    (["--timeout", "0", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "--timeout takes seconds"),
    (["--timeout", "1:30", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "--timeout takes seconds"),
    (["--subtask-timeout", "-5", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "--subtask-timeout takes"),
    (["--subtasks", "0", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "--subtasks"),
    (["-j", "zero", "-t", "Hi.", "-o", "{tmp}/x.wav"], UsageError, "-j"),
    (["--frobnicate", "-t", "Hi."], UsageError, "No such option '--frobnicate'"),
    (["-voice"], UsageError, "Option '-voice' requires an argument"),
    (["--subtask-timeout", "0.001", "-f", "{book}", "-o", "{tmp}/x.wav"], None, "subtasks failed: chunk00001"),
    (["--timeout", "0.001", "-f", "{book}", "-o", "{tmp}/x.wav"], None, "task timeout of 0.001 s exceeded"),
]


@pytest.mark.parametrize("args, error, message", ERRORS)
def test_errors_are_one_line_with_their_exit_code(capsys, tmp_path: Path, book: Path, args, error, message) -> None:
    subs = {"{tmp}": str(tmp_path), "{book}": str(book)}
    if "{junk}" in args:
        subs["{junk}"] = _junk(tmp_path)
    if "{empty}" in args:
        subs["{empty}"] = _empty(tmp_path)
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    code, out, err = gflite(capsys, *argv)
    assert code == (error.exit_code if error else 5)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("gflite: error: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "x.wav").exists()
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


# Run gflite's main in a fresh interpreter, then list the modules it imported.
_MODULES_AFTER = (
    "import json, sys\n"
    "from gflite.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    sys.stdout.write(json.dumps([exc.code, sorted(sys.modules)]))\n"
)
# Needed only by books, --replace, the read-along outputs, SSML, a cluster or a
# terminal; the parent never runs a guest itself, so never loads wasmtime.
ONLY_WHEN_ASKED = (
    "gflite.books", "gflite.books.model", "gflite.replacements", "gflite.subtitles", "gflite.timings",
    "gflite.timings_file", "gflite.ssml", "gflite.cli.progress", "gflite.gwasm.executors.dask",
    "dask", "distributed", "nltk", "tqdm", "wasmtime",
    # The flags' help and errors (click), players and encoders (subprocess).
    "click", "subprocess",
)


def _imported(tmp: Path, *args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args], cwd=tmp, capture_output=True, timeout=120,
                       env=dict(os.environ, GFLITE_CACHE_DIR=str(tmp / "cache")))
    code, modules = json.loads(r.stdout)
    assert code == 0, r.stderr
    return set(modules)


def test_plain_text_imports_no_book_cluster_or_read_along_code(tmp_path: Path) -> None:
    loaded = _imported(tmp_path, "-t", "Hello.", "-o", "x.wav")
    assert {"gflite.pipeline", "gflite.gwasm.executors.local"} <= loaded  # it did run
    assert sorted(loaded.intersection(ONLY_WHEN_ASKED)) == []
    # The flags that need them still load them.
    (tmp_path / "b.md").write_text("# One\n\nHello.\n")
    (tmp_path / "words.txt").write_text("Hello → Hi\n")
    loaded = _imported(tmp_path, "b.md", "-o", "y.wav", "--replace", "words.txt", "--subtitles", "y.srt")
    assert {"gflite.books", "gflite.replacements", "gflite.subtitles"} <= loaded


def test_exit_codes_are_documented() -> None:
    doc = cli.__doc__ or ""
    for error in (UsageError, InputError, OutputError, Interrupted):
        assert f"{error.exit_code} " in doc


# --- pipes, terminals and signals (real processes) -------------------------------


def run(args: list[str], *, cwd: Path, **kw) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    return subprocess.run(GFLITE + args, cwd=cwd, capture_output=True, timeout=120, **kw)


def test_stdin_to_stdout(tmp_path: Path, book: Path) -> None:
    want = native(tmp_path, "-voice", "kal16", "-f", str(book))
    for args in (["-", "-o", "-"], ["-f", "-", "-o", "-"], ["-o", "-"]):
        r = run(["-voice", "kal16", *args], cwd=tmp_path, input=BOOK.encode())
        assert r.returncode == 0, r.stderr
        assert r.stderr == b""  # messages never mix with the audio; no bar without a terminal
        assert r.stdout[:4] == b"RIFF" and r.stdout[44:] == want[1]


def test_stream_starts_long_before_the_end(tmp_path: Path) -> None:
    """``gflite book.txt -o - | aplay``: audio flows as soon as the first chunk is done."""
    text = LONG[: LONG.index("\n\n", 2500) + 2]
    (tmp_path / "book.txt").write_text(text)
    started = time.monotonic()
    proc = subprocess.Popen(GFLITE + ["-voice", "slt", "book.txt", "-o", "-"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    head = proc.stdout.read(4096)
    first = time.monotonic() - started
    rest = proc.stdout.read()
    proc.wait(timeout=120)
    total = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert head[:4] == b"RIFF" and len(head) == 4096 and len(rest) > 20 * len(head)
    assert first < 0.6 * total, (first, total)


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    text = " ".join([HELLO] * 8)  # one chunk, far more audio than a pipe holds
    proc = subprocess.Popen(GFLITE + ["-voice", "kal16", "-t", text, "-o", "-"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"RIFF\xff\xff\xff\xffWA"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def _pty_run(args: list[str], cwd: Path, *, stdout_tty: bool) -> tuple[int, bytes]:
    """Run gflite with stderr (and optionally stdout) on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(GFLITE + args, cwd=cwd, stdin=subprocess.DEVNULL, stderr=slave,
                            stdout=slave if stdout_tty else subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not data:
            break
        seen += data
    os.close(master)
    return proc.wait(timeout=60), seen


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(LONG[:3000])
    args = ["-voice", "kal16", "--subtasks", "3", "book.txt", "out.wav"]
    code, seen = _pty_run(args, tmp_path, stdout_tty=False)
    assert code == 0, seen
    text = seen.decode("utf-8", "replace")
    assert "3/3 chunks" in text and re.search(r"(\d+\.\d s|\d+:\d\d:\d\d) audio", text) and "ETA" in text, text
    assert "\r" in text  # redrawn in place
    assert "gflite: wrote out.wav" in text

    code, seen = _pty_run(["-q", *args], tmp_path, stdout_tty=False)
    assert (code, seen) == (0, b"")

    r = run(args, cwd=tmp_path)  # stderr is a pipe: no bar, just the summary
    assert r.returncode == 0 and r.stderr.decode().startswith("gflite: wrote out.wav") and b"\r" not in r.stderr


def test_no_wav_on_a_terminal(tmp_path: Path) -> None:
    code, seen = _pty_run(["-t", "Hi.", "-o", "-"], tmp_path, stdout_tty=True)
    assert code == OutputError.exit_code
    assert seen.decode().strip().startswith("gflite: error: refusing to write WAV audio to a terminal")


def _results(cache: Path) -> int:
    return len(list((cache / "results").rglob("*.result"))) if (cache / "results").is_dir() else 0


@pytest.mark.slow  # ~4 s; test_pipeline's in-process interrupt test covers the same path by default
@pytest.mark.usefixtures("sigint_reaches_children")
def test_ctrl_c_leaves_nothing_and_a_rerun_resumes(tmp_path: Path, fresh_cache: Path) -> None:
    # Twice as long, the copy in another order: no two chunks alike (equal chunks share a cache entry).
    text = (LONG + "\n\n".join(reversed(LONG.split("\n\n")))).replace("\n", "\r\n")
    (tmp_path / "book.txt").write_bytes(text.encode())
    out_dir, tmp_dir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp_dir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_dir))  # where workers' attempt directories go
    args = GFLITE + ["-voice", "kal16", "--subtasks", "8", "-j1", "book.txt", "out/book.wav"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _results(fresh_cache) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode() == f"gflite: error: {cli.INTERRUPTED}\n"
    assert list(out_dir.iterdir()) == [] and list(tmp_dir.iterdir()) == []
    done = _results(fresh_cache)
    assert 2 <= done < 8

    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cached = int(re.search(rb"8 chunks \((\d+) from cache\)", r.stderr).group(1))  # type: ignore[union-attr]
    assert cached == done  # finished chunks were not synthesised again
    assert pcm(out_dir / "book.wav") == native(tmp_path, "-voice", "kal16", "-f", str(tmp_path / "book.txt"))
    assert sorted(p.name for p in out_dir.iterdir()) == ["book.wav"] and list(tmp_dir.iterdir()) == []


# --- the result cache: its switch, its commands, whom it trusts --------------------------


def test_no_cache_and_the_cache_commands(capsys, tmp_path: Path, fresh_cache: Path) -> None:
    ok(capsys, "--no-cache", "-t", HELLO, "-o", str(tmp_path / "a.wav"))
    assert _results(fresh_cache) == 0
    err = ok(capsys, "-t", HELLO, "-o", str(tmp_path / "b.wav"))
    assert "(0 from cache)" in err and _results(fresh_cache) == 1
    code, out, _ = gflite(capsys, "--cache-info")
    assert code == 0 and out.splitlines()[0] == f"result cache: {fresh_cache / 'results'}"
    assert out.splitlines()[1].startswith("  1 results, ")
    code, out, _ = gflite(capsys, "--cache-clear")
    assert code == 0 and out.startswith("removed ") and _results(fresh_cache) == 0


def test_a_local_run_does_not_replay_an_unverified_forgery(capsys, tmp_path: Path, fresh_cache: Path) -> None:
    """A provider's unverified answer (one operator's word) sits in the cache: a
    local run makes the chunk again instead, and writes what native flite writes."""
    from gflite import pipeline, synth
    from gflite.flitewasm import program
    from gflite.gwasm.cache import ResultCache
    from gflite.gwasm.outcomes import Provenance
    from gflite.gwasm.subtask import SubtaskResult

    want = native(tmp_path, "-t", HELLO)
    ok(capsys, "--no-cache", "-t", HELLO, "-o", str(tmp_path / "honest.wav"))
    honest = (tmp_path / "honest.wav").read_bytes()
    options = synth.SynthOptions(voice=synth.resolve_voice("kal"))
    job = pipeline.Job(source=pipeline.Source("text", HELLO), output="-", options=options)
    (st,) = synth.subtasks(pipeline.plan_chunks(HELLO, job), options, literal=True)
    square = honest[:44] + (b"\xff\x7f\x00\x80" * len(honest))[: len(honest) - 44]
    forged = SubtaskResult(st.index, st.name, ok=True, outputs=((synth.OUT_NAME, square),), provider="tcp://m:1")
    cache = ResultCache(fresh_cache)
    assert cache.put(program(), st, forged, Provenance(local=False, operators=("mallory",)))
    assert cache.get(program(), st).outputs == forged.outputs  # the very entry gflite looks up
    err = ok(capsys, "-t", HELLO, "-o", str(tmp_path / "out.wav"))
    assert "(0 from cache)" in err
    assert pcm(tmp_path / "out.wav") == want
    # The local result replaced the forgery.
    assert cache.get(program(), st).provenance.local


# --- issue 9: as exact as flite, louder than flite --------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs): writes past it fail with ENOSPC."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("ext", ["mp3", "ogg", "flac", "wav"])
def test_full_disk_is_an_output_error(capsys, full_disk: Path, ext: str) -> None:
    """Was: exit 0, nothing on stderr and no file, for .mp3/.ogg/.flac."""
    (full_disk.parent / "book.txt").write_text(LONG[:4000])
    code, out, err = gflite(capsys, "-voice", "kal16", str(full_disk.parent / "book.txt"), str(full_disk / f"b.{ext}"))
    assert code == OutputError.exit_code, err
    assert err.startswith("gflite: error: ") and "No space left on device" in err, err
    assert list(full_disk.iterdir()) == []


def _child_named(pid: int, name: str) -> Optional[int]:
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    return int(child)
            except OSError:
                pass
    return None


def test_killed_encoder_is_an_output_error(tmp_path: Path, fresh_cache: Path) -> None:
    """ffmpeg killed mid-encode: exit 9 saying so (was: exit 0, silent, no file)."""
    (tmp_path / "book.txt").write_text(LONG[:6000])
    proc = subprocess.Popen(GFLITE + ["-voice", "slt", "-j1", "book.txt", "book.mp3"], cwd=tmp_path,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    ffmpeg = None
    while ffmpeg is None and proc.poll() is None and time.monotonic() < deadline:
        ffmpeg = _child_named(proc.pid, "ffmpeg")
        time.sleep(0.01)
    assert ffmpeg is not None, "ffmpeg never started"
    os.kill(ffmpeg, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == OutputError.exit_code, err
    assert re.fullmatch(rb"gflite: error: ffmpeg stopped while encoding .*book\.mp3: killed by signal 9\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir() if p != fresh_cache) == ["book.txt"]


def test_mostly_utf8_with_stray_bytes_is_utf8_and_says_so(capsys, tmp_path: Path) -> None:
    """Was: read as cp1252 ("caf A (c)") without a word."""
    book = tmp_path / "book.txt"
    book.write_bytes("Un caf\u00e9, merci.".encode() + b" \xff\xfe Fin \x81.\n")
    err = ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "a.wav"))
    assert f"gflite: {book} is UTF-8 with 3 invalid bytes, skipped\n" in err, err
    (tmp_path / "ascii.txt").write_text("Un cafe, merci.   Fin  .\n")
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-voice", "kal16", "-f", str(tmp_path / "ascii.txt"))


def test_huge_subtasks_finishes(tmp_path: Path, book: Path) -> None:
    """--subtasks 99999999999999999999 spun at 100 % CPU for minutes."""
    r = run(["-voice", "kal16", "--subtasks", "99999999999999999999", "-v", str(book), "out.wav"],
            cwd=tmp_path)  # run()'s timeout fails the test if it spins
    assert r.returncode == 0, r.stderr
    assert pcm(tmp_path / "out.wav") == native(tmp_path, "-voice", "kal16", "-f", str(book))


def test_default_chunk_timeout_follows_the_expected_cost(capsys, tmp_path: Path, book: Path) -> None:
    err = ok(capsys, "-v", "-voice", "kal16", str(book), str(tmp_path / "a.wav"))
    assert "at most 30 s a chunk" in err, err  # was a flat 600 s
    err = ok(capsys, "-v", "-voice", "kal16", "--subtask-timeout", "90", str(book), str(tmp_path / "b.wav"))
    assert "at most 90 s a chunk" in err, err


def test_workers_are_capped(capsys, tmp_path: Path, book: Path) -> None:
    """-j 1000 on 2 cores started 48 workers and said "on 1000 workers"."""
    from gflite.gwasm.executors import default_workers

    err = ok(capsys, "-v", "-j", "1000", "-voice", "kal16", "--subtasks", "3", str(book), str(tmp_path / "a.wav"))
    cap = min(2 * default_workers(), 3)
    assert f"gflite: -j 1000: using {cap} workers" in err or f"using {cap} worker " in err, err
    assert re.search(rf"in 3 chunks on {cap} workers?,", err), err


def test_fifo_output_is_streamed_into(tmp_path: Path) -> None:
    """flite writes into a FIFO; gflite replaced it with a file and the reader got nothing."""
    fifo = tmp_path / "out.wav"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        r = run(["-voice", "kal16", "-t", HELLO, "-o", str(fifo)], cwd=tmp_path)
        got = reader.communicate(timeout=30)[0]
    finally:
        reader.kill()
    assert r.returncode == 0, r.stderr
    assert fifo.is_fifo()
    assert pcm(got)[1] == native(tmp_path, "-voice", "kal16", "-t", HELLO)[1]


def test_dev_stdout_is_written_into_as_flite_does(tmp_path: Path) -> None:
    """The shell's redirect is written into (and its sizes patched), not replaced."""
    with open(tmp_path / "out.wav", "wb") as out:
        r = subprocess.run(GFLITE + ["-q", "-t", HELLO, "-o", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE,
                           timeout=120)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    subprocess.run([FLITE, "-t", HELLO, "-o", str(tmp_path / "native.wav")], check=True)
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "native.wav").read_bytes()
    assert Path("/dev/stdout").is_symlink()


def test_symlinked_output_is_written_through(capsys, tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    link = tmp_path / "out.wav"
    link.symlink_to(tmp_path / "store" / "real.wav")
    ok(capsys, "-voice", "kal16", "-t", HELLO, "-o", str(link))
    assert link.is_symlink() and pcm(tmp_path / "store" / "real.wav") == native(tmp_path, "-voice", "kal16", "-t", HELLO)


def test_stale_parts_are_cleaned_up(tmp_path: Path, fresh_cache: Path) -> None:
    """A run killed with kill -9 leaves its .NAME.xxxx.part; the next run of the same output removes it."""
    (tmp_path / "book.txt").write_text(LONG[:3000])
    args = ["-voice", "slt", "-j1", "book.txt", "book.wav"]
    proc = subprocess.Popen(GFLITE + args, cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".book.wav.*.part")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    stale = list(tmp_path.glob(".book.wav.*.part"))
    assert len(stale) == 1
    r = run(["-voice", "kal16", "book.txt", "book.wav"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p != fresh_cache) == ["book.txt", "book.wav"]


@pytest.mark.parametrize("flags", [["-pw"], ["-ps"], ["-psdur"], ["-pr", "Word"], ["-pw", "-ps"]])
def test_print_flags_print_what_flite_prints(tmp_path: Path, flags: list[str]) -> None:
    """Each chunk's printout, in chunk order, equals flite's on the whole book."""
    book = ROOT / "sample_texts" / "dialogue.txt"
    want = subprocess.run([FLITE, *flags, "-voice", "kal16", "-f", str(book), "-o", "none"],
                          check=True, capture_output=True).stdout
    r = run([*flags, "-voice", "kal16", "--subtasks", "4", "-f", str(book), "-o", "none"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want and len(want) > 100


def test_add_lex_is_shipped_to_the_sandbox(capsys, tmp_path: Path) -> None:
    lex = tmp_path / "my.lex"
    lex.write_text("tomato : t ax0 m aa1 t ow0\n")
    text = "I say tomato."
    ok(capsys, "-add_lex", str(lex), "-voice", "kal16", "-t", text, "-o", str(tmp_path / "a.wav"))
    want = native(tmp_path, "-add_lex", str(lex), "-voice", "kal16", "-t", text)
    assert pcm(tmp_path / "a.wav") == want != native(tmp_path, "-voice", "kal16", "-t", text)


def test_benchmark_mode_as_flite(tmp_path: Path) -> None:
    want = subprocess.run([FLITE, "-b"], check=True, capture_output=True, text=True).stdout
    r = run(["-b"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pattern = r"times faster than real-time: [0-9.]+\n\(([0-9.]+) seconds of speech synthesized in [0-9.]+\)\n"
    ours, theirs = re.fullmatch(pattern, r.stdout.decode()), re.fullmatch(pattern, want)
    assert ours and theirs and ours.group(1) == theirs.group(1) == "5.032250", (r.stdout, want)
    assert list(tmp_path.iterdir()) == []


def test_voicedir_and_long_voice_names_are_accepted(capsys, tmp_path: Path) -> None:
    ok(capsys, "-voicedir", str(tmp_path), "-voice", "cmu_us_slt", "-t", HELLO, "-o", str(tmp_path / "a.wav"))
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-voicedir", str(tmp_path), "-voice", "cmu_us_slt", "-t", HELLO)


@pytest.mark.parametrize("name", ["out.aiff", "out", "out.txt"])
def test_any_other_name_is_wav_as_flite(capsys, tmp_path: Path, name: str) -> None:
    err = ok(capsys, "-voice", "kal16", "-t", HELLO, "-o", str(tmp_path / name))
    assert "as WAV, as flite does" in err
    subprocess.run([FLITE, "-voice", "kal16", "-t", HELLO, "-o", str(tmp_path / f"native-{name}")], check=True)
    assert (tmp_path / name).read_bytes() == (tmp_path / f"native-{name}").read_bytes()


def test_help_keeps_its_layout_and_mentions_the_cache(capsys) -> None:
    code, out, _ = gflite(capsys, "--help")
    assert code == 0
    assert "\n  examples:\n    gflite book.txt book.mp3                   flite's positional form\n" in out, out
    assert "\n    8 cluster, 9 output, 130 interrupted" in out
    assert "cache" in out and "GFLITE_CACHE_DIR" in out
    # The layout it had under typer: arguments apart, defaults, ranges and the env var shown.
    assert out.startswith("Usage: gflite [OPTIONS] [TEXT_OR_FILE [OUTFILE]]\n"), out
    assert "\nArguments:\n  [TEXT_OR_FILE [OUTFILE]]\n\nOptions:\n  --version " in out, out
    for shown in ("[default:\n                            kal]", "[default: m4a]", "[x>=1]", "[default: 1; x>=1]",
                  "[env var: GFLITE_CLUSTER]", "[default: 0.0; 0.0<=x<=1.0]", "  -h, -?, --help  "):
        assert shown in out, shown
    for hidden in ("-voicedump", "-p ", "-l "):
        assert f"\n  {hidden}" not in out


def test_dropped_and_spelled_characters_are_reported(capsys, tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("Snow \u2603 and \u2602 \u2601 \u2600 \u2604 \u2605 \u2606, cost \u00a35.\n", encoding="utf-8")
    err = ok(capsys, "-voice", "kal16", str(book), str(tmp_path / "a.wav"))
    assert "gflite: said '\u00a3' as 'GBP'\n" in err, err
    assert re.search(r"dropped 7 characters flite cannot say: ('.' x1, ){4}'.' x1 and 2 more\n", err), err
    err = ok(capsys, "-voice", "kal16", "-t", "One \u2603.", "-o", str(tmp_path / "b.wav"))
    assert "dropped 1 character flite cannot say: '\u2603' x1\n" in err, err


def test_punctuation_only_input_warns(capsys, tmp_path: Path) -> None:
    code, _, err = gflite(capsys, "-voice", "kal16", "-t", "... !!! ???", "-o", str(tmp_path / "a.wav"))
    assert code == 0 and "warning: the text has nothing flite can say" in err, err
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-voice", "kal16", "-t", "... !!! ???")


def test_ctrl_c_after_the_file_is_written_is_not_a_failure(capsys, tmp_path: Path, monkeypatch) -> None:
    """Was exit 130 for a complete file."""
    from gflite.cli import report

    real = report.note

    def note(message: str) -> None:
        real(message)
        if message.startswith("wrote "):
            raise KeyboardInterrupt  # Ctrl-C arriving just after the "wrote" line

    monkeypatch.setattr(report, "note", note)
    code, _, err = gflite(capsys, "-voice", "kal16", "-t", HELLO, "-o", str(tmp_path / "a.wav"))
    assert code == 0 and "interrupted" not in err, err
    assert pcm(tmp_path / "a.wav") == native(tmp_path, "-voice", "kal16", "-t", HELLO)


def test_long_audio_is_given_as_h_mm_ss(capsys, tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(LONG[:1500])
    err = ok(capsys, "-voice", "kal16", str(tmp_path / "book.txt"), str(tmp_path / "a.wav"))
    rate, samples = pcm(tmp_path / "a.wav")
    seconds = int(len(samples) / 2 / rate + 0.5)
    assert seconds > 60
    assert f": 0:{seconds // 60:02d}:{seconds % 60:02d} of audio," in err, err


def test_kal_file_differs_from_flite_only_by_flites_byte_rate_bug(capsys, tmp_path: Path, book: Path) -> None:
    """What README says: native kal, appending utterances, leaves its header's byte
    rate (bytes 28-31) at 32000 for 8 kHz audio; gflite writes the right 16000."""
    ok(capsys, str(book), str(tmp_path / "ours.wav"))
    subprocess.run([FLITE, "-f", str(book), "-o", str(tmp_path / "flite.wav")], check=True)
    ours, theirs = (tmp_path / "ours.wav").read_bytes(), (tmp_path / "flite.wav").read_bytes()
    assert ours[:28] == theirs[:28] and ours[32:] == theirs[32:]
    assert (int.from_bytes(ours[28:32], "little"), int.from_bytes(theirs[28:32], "little")) == (16000, 32000)
