"""``gflite``: flite's command line, run as parallel sandboxed subtasks.

Existing flite commands keep working with a ``g`` in front: ``-f``, ``-t``,
``-o``, ``-voice``, ``-lv``, ``--setf``/``--seti``/``--sets``/``-s``, ``-ssml``,
``-v``, ``--version``, and flite's positional ``TEXT_OR_FILE [OUTFILE]``.
This module turns flags into a frozen :class:`gflite.pipeline.Job`, draws
progress on stderr, and chooses exit codes (listed in README.md):

0 ok · 1 other error · 2 bad usage · 3 bad input text or voice · 5 a chunk
failed · 6 providers disagreed · 7 bid/budget · 8 cluster · 9 output ·
130 interrupted.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gflite import __version__
from gflite.errors import GfliteError, Interrupted, OutputError, UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

PROG = "gflite"
_CONTEXT = {"help_option_names": ["-h", "--help", "-?"]}


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")


def _note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


def _duration(value: Optional[str], flag: str) -> Optional[float]:
    """Seconds, or g-flite's HH:MM:SS."""
    if value is None:
        return None
    from gflite.gwasm.task import parse_duration

    try:
        return float(value) if ":" not in value else parse_duration(value, flag)
    except (ValueError, GfliteError):
        raise UsageError(f"{flag} takes seconds or HH:MM:SS, not {value!r}") from None


@app.command(context_settings=_CONTEXT)
def flite(
    positional: Optional[List[str]] = typer.Argument(
        None, metavar="[TEXT_OR_FILE [OUTFILE]]", show_default=False,
        help="A file to read if one exists by that name (- is stdin), else text to say; then the output.",
    ),
    text: Optional[str] = typer.Option(None, "-t", help="Say TEXT.", metavar="TEXT"),
    file: Optional[str] = typer.Option(None, "-f", help="Read text from FILE (- is stdin).", metavar="FILE"),
    output: Optional[str] = typer.Option(
        None, "-o", metavar="OUTFILE",
        help="Write audio here: .wav, .mp3, .ogg, .flac; - is WAV on stdout; none discards; play plays it.",
    ),
    voice: str = typer.Option("kal", "-voice", "--voice", metavar="NAME",
                              help="kal, kal16, awb, rms, slt, or a .flitevox file."),
    list_voices: bool = typer.Option(False, "-lv", help="List the voices and exit."),
    setf: List[str] = typer.Option([], "--setf", metavar="F=V", help="Set a float feature."),
    seti: List[str] = typer.Option([], "--seti", metavar="F=V", help="Set an int feature."),
    sets: List[str] = typer.Option([], "--sets", metavar="F=V", help="Set a string feature."),
    setany: List[str] = typer.Option([], "-s", "--set", metavar="F=V", help="Set a feature (type guessed)."),
    ssml: bool = typer.Option(False, "-ssml", help="Read the input as SSML (spoken as one chunk)."),
    verbose: bool = typer.Option(False, "-v", help="Say what is being done and how fast."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    subtasks: Optional[int] = typer.Option(None, "--subtasks", min=1, metavar="N",
                                           help="Split into N chunks [default: by text length]."),
    workers: Optional[int] = typer.Option(None, "-j", "--workers", min=1, metavar="N",
                                          help="Local worker processes [default: all cores]."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS", envvar="GFLITE_CLUSTER",
                                          help="Run on a Dask scheduler (tcp://host:8786 or tls://...)."),
    redundancy: int = typer.Option(1, "--redundancy", min=1, metavar="K",
                                   help="Run each chunk on K distinct providers and compare."),
    bid: Optional[float] = typer.Option(None, "--bid", min=0, help="Most you pay per CPU-second."),
    budget: Optional[float] = typer.Option(None, "--budget", min=0, help="Most you pay for the whole job."),
    timeout: Optional[str] = typer.Option(None, "--timeout", metavar="T", help="Whole job (seconds or HH:MM:SS)."),
    subtask_timeout: Optional[str] = typer.Option("600", "--subtask-timeout", metavar="T",
                                                  help="Per chunk (seconds or HH:MM:SS)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or notes."),
) -> None:
    """Convert text to speech with flite, in parallel: gflite [options] [TEXT_OR_FILE [OUTFILE]]"""
    if version:
        _print_version()
        return
    if list_voices:
        _list_voices()
        return

    from gflite import pipeline, synth

    pos = list(positional or [])
    source: Optional[pipeline.Source] = None
    if text is not None and file is not None:
        raise UsageError("give -t TEXT or -f FILE, not both")
    if text is not None:
        source = pipeline.Source("text", text)
    elif file is not None:
        source = pipeline.Source("stdin", "-") if file == "-" else pipeline.Source("file", file)
    elif pos:
        first = pos.pop(0)
        if first == "-":
            source = pipeline.Source("stdin", "-")
        elif os.path.exists(first):
            source = pipeline.Source("file", first)
        else:
            source = pipeline.Source("text", first)
    else:
        source = pipeline.Source("stdin", "-")  # as flite: no input means stdin
    if pos:
        if output is not None:
            raise UsageError(f"two outputs: -o {output} and {pos[0]}")
        output = pos.pop(0)
    if pos:
        raise UsageError(f"unexpected argument {pos[0]!r}")
    output = output or "play"

    features = tuple(
        synth.parse_feature(flag, fv)
        for flag, values in (("--setf", setf), ("--seti", seti), ("--sets", sets), ("-s", setany))
        for fv in values
    )
    job = pipeline.Job(
        source=source,
        output="-" if output == "play" else output,
        options=synth.SynthOptions(voice=synth.resolve_voice(voice), features=features, ssml=ssml),
        subtasks=subtasks,
        workers=workers,
        cluster=cluster,
        redundancy=redundancy,
        bid=bid,
        budget=budget,
        timeout=_duration(timeout, "--timeout"),
        subtask_timeout=_duration(subtask_timeout, "--subtask-timeout") or 600.0,
    )
    if output == "play":
        _play(job, quiet, verbose)
    else:
        _render(job, quiet, verbose)


def _render(job, quiet: bool, verbose: bool, stdout=None) -> None:  # type: ignore[no-untyped-def]
    from gflite import pipeline

    import tqdm

    # tqdm's monitor thread would keep the local executor from forking its workers cheaply.
    tqdm.tqdm.monitor_interval = 0
    show = not quiet and sys.stderr.isatty()
    bar = None
    done = {"n": 0}

    def on_plan(plan: pipeline.Plan) -> None:
        nonlocal bar
        if plan.text.dropped and not quiet:
            shown = ", ".join(f"{ch!r} x{n}" for ch, n in plan.text.dropped[:5])
            _note(f"dropped {plan.text.dropped_count} characters flite cannot say: {shown}")
        if verbose:
            _note(f"{plan.characters} characters ({plan.text.encoding}) in {plan.chunks} chunks")
        if show:
            bar = tqdm.tqdm(total=plan.chunks, unit="chunk", file=sys.stderr, leave=False,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} chunks, {postfix} [{elapsed}<{remaining}]")
            bar.set_postfix_str("0 s audio")

    def on_progress(p: pipeline.Progress) -> None:
        done["n"] += 1
        if bar is not None:
            bar.set_postfix_str(f"{p.audio_seconds:.0f} s audio", refresh=False)
            bar.update(1)

    try:
        summary = pipeline.render(job, on_plan=on_plan, on_progress=on_progress, stdout=stdout)
    finally:
        if bar is not None:
            bar.close()
    if verbose or (not quiet and job.output not in ("-", "none")):
        speed = summary.audio_seconds / summary.elapsed if summary.elapsed > 0 else 0.0
        cached = f", {summary.from_cache} from cache" if summary.from_cache else ""
        where = "stdout" if job.output == "-" else job.output
        _note(f"wrote {where}: {summary.audio_seconds:.1f} s of audio, {summary.chunks} chunks{cached}, "
              f"{summary.elapsed:.1f} s ({speed:.1f}x real time)")


def _play(job, quiet: bool, verbose: bool) -> None:  # type: ignore[no-untyped-def]
    """flite's default output: play it. We stream WAV into a local player."""
    player = None
    if shutil.which("aplay"):
        player = ["aplay", "-q", "-"]
    elif shutil.which("play"):
        player = ["play", "-q", "-t", "wav", "-"]
    if player is None:
        raise OutputError("no audio player (aplay or sox's play) to play to; give -o FILE, or -o - for stdout")
    proc = subprocess.Popen(player, stdin=subprocess.PIPE)
    try:
        _render(job, quiet, verbose, stdout=proc.stdin)
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait()


def _flite_stdout(*args: str, exit_code: int = 0) -> str:
    """Run flite.wasm itself (in-process) and return what it printed."""
    from gflite.flitewasm import program
    from gflite.gwasm.sandbox import run_subtask
    from gflite.gwasm.subtask import Limits, Subtask

    result = run_subtask(program(), Subtask(0, "info", tuple(args), (), ()), Limits(subtask_timeout=30))
    if not result.ok and result.exit_code != exit_code:
        raise GfliteError(f"flite.wasm {' '.join(args)} failed: {result.reason}")
    return result.stdout.decode("ascii", "replace")


def _print_version() -> None:
    from gflite.flitewasm import PINNED_SHA256

    sys.stdout.write(f"gflite {__version__} (flite.wasm sha256 {PINNED_SHA256[:16]})\n")
    sys.stdout.write(_flite_stdout("--version", exit_code=1))  # flite exits 1 after --version


def _list_voices() -> None:
    sys.stdout.write(_flite_stdout("-lv"))


def _usage_error_types() -> tuple[type[BaseException], ...]:
    from gflite.gwasm.cli import _usage_error_types as types

    return types()


def main(argv: Optional[List[str]] = None) -> None:
    """The ``gflite`` console script."""
    try:
        code = app(args=argv, prog_name=PROG, standalone_mode=False)
    except _usage_error_types() as exc:
        _error(f"{exc.format_message()} (see {PROG} --help)")  # type: ignore[attr-defined]
        code = UsageError.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted; finished chunks are cached, rerun to resume")
        code = Interrupted.exit_code
    except BrokenPipeError:
        # The reader went away (e.g. `gflite ... -o - | head`): not our error.
        sys.stderr.close()
        code = 0
    except GfliteError as exc:
        _error(str(exc))
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
