"""gflite.cli.flags: the parser of common command lines gives exactly what click gives.

click (gflite.cli.options, built from the same table) is the reference: every
command line :func:`flags.parse` takes must come out as click's values, and every
one click refuses must be left to click (which says why)."""
from __future__ import annotations

import random
import subprocess
import sys

import click
import pytest

from gflite.cli import flags
from gflite.cli.options import command


def _same(a: dict | None, b: dict | None) -> bool:
    """Equal values, NaN equal to NaN, 1 not equal to 1.0 or True (types count)."""
    as_text = lambda d: None if d is None else repr(sorted((k, type(v).__name__, v) for k, v in d.items()))  # noqa: E731
    return as_text(a) == as_text(b)


def _click(argv: list[str]) -> dict | None:
    """click's values for ``argv``, or None if click refuses it."""
    try:
        with command.make_context("gflite", list(argv)) as ctx:
            return dict(ctx.params)
    except click.exceptions.Exit:  # --help
        return None
    except click.UsageError:
        return None


COMMON = [
    [],
    ["-t", "Hello.", "-o", "x.wav"],
    ["book.txt", "book.mp3"],
    ["-voice", "slt", "-f", "book.txt", "-o", "book.wav"],
    ["book.txt", "-o", "-"],
    ["-", "-o", "-", "-q"],
    ["-f", "-", "--voice", "kal16", "-j", "2", "--subtasks", "7", "-v"],
    ["book.epub", "--chapters", "3-7,9", "--split", "chapters", "-o", "out/", "--split-format", "mp3"],
    ["-t", "-5 degrees", "-o", "none"],  # a value is taken whatever it starts with
    ["-t", "--", "-o", "x.wav"],
    ["--", "-5 degrees", "x.wav"],
    ["--setf", "duration_stretch=1.2", "--setf", "int_f0_target_mean=120", "-s", "x=1", "--set", "y=2"],
    ["--sentence-silence", "0.5", "--paragraph-silence", "1", "--chapter-silence", "2e0", "x.md"],
    ["--redundancy", "3", "--bid", "0.5", "--budget", "10", "--audit", "0.25", "--cluster", "tls://h:8786"],
    ["--bid", "nan", "--audit", "nan"],  # click lets NaN through its ranges; to_args refuses a NaN bid
    ["-pw", "-ps", "-psdur", "-pr", "Word", "-t", "Hi."],
    ["-p", "hh ay", "-l", "-voicedump", "v.flitevox"],
    ["--subtitles", "x.srt", "--subtitles-words", "--timings", "x.json", "x.txt"],
    ["--keep-notes", "--keep-toc", "--keep-front-matter", "--keep-back-matter", "--keep-nonlinear", "b.epub"],
    ["--timeout", "1:00:00", "--subtask-timeout", "-5", "--no-cache", "--cache-info", "--cache-clear"],
    ["--version", "-lv", "-b", "--list-chapters", "-add_lex", "l.txt", "--add-lex", "m.txt", "-voicedir", "d"],
    ["-j", " 2", "--subtasks", "1_000", "--workers", "+3"],
    ["-t", "Hi.", "-t", "Bye.", "-voice", "slt", "-voice", "rms"],  # the last one wins
]
LEFT_TO_CLICK = [
    ["--help"], ["-h"], ["-?"], ["--frobnicate"], ["-voice"], ["-t"], ["--voice=slt"], ["-tHello"],
    ["-j", "0"], ["-j", "zero"], ["--subtasks", "1.5"], ["--bid", "-1"], ["--audit", "1.5"],
    ["--sentence-silence", "soon"], ["-5"], ["--set"], ["-qv"],
]


@pytest.mark.parametrize("argv", COMMON, ids=lambda a: " ".join(a) or "(none)")
def test_common_command_lines_parse_as_click_parses_them(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GFLITE_CLUSTER", raising=False)
    fast = flags.parse(argv)
    assert fast is not None
    assert _same(fast, _click(argv))


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=" ".join)
def test_help_errors_and_other_forms_are_left_to_click(argv: list[str]) -> None:
    assert flags.parse(argv) is None


@pytest.mark.parametrize("env", ["tcp://sched:8786", ""])
def test_the_cluster_comes_from_the_environment_unless_given(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GFLITE_CLUSTER", env)
    for argv in (["-t", "Hi."], ["-t", "Hi.", "--cluster", "tls://other:1"]):
        assert _same(flags.parse(argv), _click(argv))


def test_random_command_lines_agree_with_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GFLITE_CLUSTER", raising=False)
    names = [name for flag in flags.FLAGS for name in flag.names]
    words = [*names, "-", "--", "Hello.", "x.wav", "0", "1", "-1", "0.5", "2.5", "nan", "inf", "x=1", "-5",
             "--voice=slt", "-tHi", "--help", "a b"]
    draw = random.Random(20261202)
    taken = 0
    for _ in range(3000):
        argv = [draw.choice(words) for _ in range(draw.randint(0, 6))]
        fast, slow = flags.parse(argv), _click(argv)
        if fast is not None:
            taken += 1
            assert _same(fast, slow), argv
        # Whatever click refuses is left to it (so it says why).
        if slow is None:
            assert fast is None, argv
    assert taken > 300  # the comparison saw many parsed lines, not only refusals


def test_a_common_run_does_not_import_click(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys\nfrom gflite.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, 'click' in sys.modules)\n")
    run = lambda *a: subprocess.run([sys.executable, "-c", code, *a], cwd=tmp_path, capture_output=True,  # noqa: E731
                                    text=True, timeout=120).stdout.split()
    assert run("-t", "Hello.", "-o", "none") == ["0", "False"]
    assert run("--frobnicate") == ["2", "True"]  # its error is click's
