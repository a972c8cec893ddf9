"""The whole job, stage by stage: text → chunks → subtasks → execution → stitching.

``render`` is what ``gflite`` runs; the CLI only turns flags into a
:class:`Job` and draws progress from the :class:`Progress` events.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gflite import chunking, stitching, synth
from gflite.gwasm.subtask import Limits, SubtaskResult
from gflite.text import Text, decode, from_string, read_text

STDIN = "-"


@dataclass(frozen=True)
class Source:
    """Where the text comes from: a file, stdin (``-``) or a literal string."""

    kind: str  # "file" | "stdin" | "text"
    value: str

    def read(self, stdin: BinaryIO | None = None) -> Text:
        if self.kind == "text":
            return from_string(self.value)
        if self.kind == "stdin":
            return decode((stdin or sys.stdin.buffer).read(), name="stdin")
        return read_text(self.value)


@dataclass(frozen=True)
class Job:
    source: Source
    output: str  # a path, "-" (stdout), or "none" (discard, as flite)
    options: synth.SynthOptions
    subtasks: int | None = None
    workers: int | None = None
    cluster: str | None = None
    redundancy: int = 1
    bid: float | None = None
    budget: float | None = None
    timeout: float | None = None
    subtask_timeout: float = 600.0
    retries: int = 2


@dataclass(frozen=True)
class Plan:
    """What is about to run, reported before any work starts."""

    text: Text
    chunks: int
    characters: int


@dataclass(frozen=True)
class Progress:
    """One finished chunk (in completion order) and the audio written so far."""

    result: SubtaskResult
    from_cache: bool
    audio_seconds: float


@dataclass(frozen=True)
class Summary:
    chunks: int
    from_cache: int
    audio_seconds: float
    elapsed: float
    output: str


def render(
    job: Job,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Synthesise ``job`` and write its audio; returns what was done.

    The output is opened before any synthesis (a bad path fails at once) and
    written as results arrive in chunk order; on any error it is discarded,
    while finished chunks stay in the result cache so a rerun resumes.
    """
    from gflite.flitewasm import program as flite_program
    from gflite.gwasm import execution
    from gflite.gwasm.cache import ResultCache
    from gflite.gwasm.executors import make_executor

    started = time.monotonic()
    text = job.source.read(stdin)
    literal = job.source.kind == "text"
    if job.options.ssml or literal:
        # flite speaks -t TEXT as one utterance, and SSML tags may span any
        # break: both must reach flite whole to sound as flite makes them.
        chunks = chunking.split(text.text, subtasks=1)
    else:
        chunks = chunking.split(text.text, subtasks=job.subtasks)
    tasks = synth.subtasks(chunks, job.options, literal=literal)
    if on_plan is not None:
        on_plan(Plan(text=text, chunks=len(chunks), characters=len(text.text)))

    program = flite_program()
    limits = Limits(subtask_timeout=job.subtask_timeout)
    writer = _open(job.output, stdout, job.options.voice.rate)
    cached = 0

    def progress(result: SubtaskResult, from_cache: bool) -> None:
        nonlocal cached
        cached += from_cache
        if on_progress is not None:
            on_progress(Progress(result, from_cache, writer.seconds if writer else 0.0))

    try:
        with make_executor(workers=job.workers, cluster=job.cluster) as executor:
            results = execution.run(
                executor,
                program,
                tasks,
                limits,
                retries=job.retries,
                task_timeout=job.timeout,
                cache=ResultCache(),
                on_result=progress,
            )
            try:
                for result in results:
                    if writer is not None:
                        writer.add(dict(result.outputs)[synth.OUT_NAME])
            finally:
                results.close()  # type: ignore[attr-defined]
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return Summary(
        chunks=len(tasks),
        from_cache=cached,
        audio_seconds=writer.seconds if writer else 0.0,
        elapsed=time.monotonic() - started,
        output=job.output,
    )


def _open(output: str, stdout: BinaryIO | None, rate: int) -> stitching.AudioWriter | None:
    if output == "none":
        return None
    if output != STDIN:
        parent = Path(output).parent
        if not parent.is_dir():
            from gflite.errors import OutputError

            raise OutputError(f"output directory does not exist: {parent}")
    return stitching.open_output(output, stdout=stdout, default_rate=rate)
