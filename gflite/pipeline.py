"""The whole job, stage by stage: text → chunks → subtasks → execution → stitching.

``render`` is what ``gflite`` runs; the CLI only turns flags into a
:class:`~gflite.jobs.Job` (in :mod:`gflite.jobs`, with the :class:`Plan` and
:class:`Progress` events it draws progress from, all importable from here too)
and :mod:`gflite.pieces` puts each chunk's audio into the writer.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

from gflite import pieces, synth, voices
from gflite.errors import OutputError
from gflite.gwasm.subtask import Limits, Subtask, SubtaskResult
from gflite.jobs import (
    DISCARD,
    STDIN,
    STDOUT,
    BookText,
    Job,
    Plan,
    Progress,
    Source,
    Summary,
)
from gflite.pauses import Cut
from gflite.text import Text

__all__ = ["DISCARD", "STDIN", "STDOUT", "BookText", "Job", "Plan", "Progress", "Source", "Summary",
           "render", "plan_chunks", "plan_ssml", "plan_cuts", "chunk_timeout", "stream_chunks", "local_workers"]

if TYPE_CHECKING:
    from gflite import stitching
    from gflite.chunking import Chunk
    from gflite.gwasm.cache import ResultCache
    from gflite.gwasm.executors.base import Executor

def plan_chunks(text: str, job: Job, cuts: tuple[Cut, ...] = ()) -> tuple[Chunk, ...]:
    """Where the text is cut, from the text, the job's chunking options and the
    forced cuts (chapters, pauses) alone."""
    from gflite import chunking

    if job.options.ssml or job.source.kind == "text":
        # flite speaks -t TEXT as one utterance: it must reach flite whole.
        # (SSML from a file is cut by plan_ssml, never here.)
        return chunking.split(text, subtasks=1)
    return chunking.split(text, subtasks=job.subtasks, target_chars=_target(job),
                          forced=tuple(c.offset for c in cuts))


def plan_ssml(text: Text, job: Job) -> tuple[Text, tuple[Cut, ...]]:
    """SSML as whole documents, one after another, each a chunk: cut at every
    ``<break>`` (its silence goes before the next) and at top-level sentence
    ends, with named prosody made numeric (see ``gflite.ssml``)."""
    from gflite import ssml

    parts = ssml.pieces(text.text, _target(job))
    cuts, pos = [], 0
    for piece in parts:
        if pos or piece.silence:
            cuts.append(Cut(pos, piece.silence))
        pos += len(piece.text)
    return replace(text, text="".join(p.text for p in parts)), tuple(cuts)


def plan_cuts(text: str, job: Job) -> tuple[Cut, ...]:
    """The chunk starts the job forces: a book's chapters, and wherever a pause goes."""
    from gflite import pauses

    if job.options.ssml or job.source.kind == "text":
        return ()
    chapters = job.book.chapters if job.book is not None else ()
    if not chapters and not job.pauses.any:
        return ()  # plain text: flite's cuts, untouched
    return pauses.cuts(text, job.pauses, chapters)


def render(
    job: Job,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cache: ResultCache | None = None,
    on_printout: Callable[[bytes], None] | None = None,
) -> Summary:
    """Synthesise ``job`` and write its audio; returns what was done.

    ``cache`` holds finished chunks (default: the user's result cache).
    ``on_printout`` gets what flite printed for each chunk (``-pw``, ``-ps``...), in chunk order.

    The output is opened first (a bad path or format fails before the input is
    read) and written in chunk order as results arrive, so ``-o -`` starts
    as soon as the first chunk is ready. On any error or interrupt it is
    discarded; finished chunks stay in the result cache, so a rerun resumes.
    """
    started = time.monotonic()
    writer = pieces.open_writer(job, stdout)
    try:
        summary = _render(job, writer, stdin, on_plan, on_progress, cache, started, on_printout)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None and job.book is not None and job.book.anchors is not None:
        from gflite.bookwriter import ReadAlongWriter

        # -o book.epub: packed once the timings are in (its scratch folder goes, whatever happens).
        assert isinstance(writer, ReadAlongWriter) and summary.timeline is not None
        writer.pack(summary.timeline)
    if summary.timeline is not None:  # read-along hook: after the audio is in place
        from gflite import subtitles

        subtitles.write_all(summary.timeline, subtitles=job.subtitles, words=job.subtitle_words, timings=job.timings)
    if writer is None:
        return summary
    files = ()
    if job.split:  # a ChapterSplitWriter: the files it wrote
        files = tuple(str(p) for p in writer.paths)  # type: ignore[attr-defined]
    return replace(summary, audio_seconds=writer.seconds, unknown_length=writer.unknown_length, files=files)


def _render(
    job: Job,
    writer: stitching.AudioWriter | None,
    stdin: BinaryIO | None,
    on_plan: Callable[[Plan], None] | None,
    on_progress: Callable[[Progress], None] | None,
    cache: ResultCache | None,
    started: float,
    on_printout: Callable[[bytes], None] | None = None,
) -> Summary:
    from gflite.flitewasm import program as flite_program
    from gflite.gwasm import execution
    from gflite.gwasm.market import Market

    replaced = 0
    if job.book is not None:
        text, replaced = job.book.text, job.book.replaced_words
    else:
        text = job.source.read(stdin, origins=job.source_spans)
        if job.replacements is not None:
            rules = job.replacements.normalised()
            if job.options.ssml:
                from gflite.ssml import map_text

                said, replaced = map_text(text.text, rules.apply)  # words, never tags
            else:
                said, replaced = rules.apply(text.text)
            text = replace(text, text=said)
    if job.options.ssml and job.source.kind == "text":
        from gflite.ssml import translate_prosody

        text = replace(text, text=translate_prosody(text.text))  # -t: one utterance, as flite
    streamed = None
    if job.options.ssml and job.source.kind != "text":
        text, cuts = plan_ssml(text, job)
        from gflite import chunking

        chunks = chunking.at(text.text, [c.offset for c in cuts])
    else:
        cuts = plan_cuts(text.text, job)
        if job.use_cache and cache is None:
            from gflite.gwasm.cache import ResultCache

            cache = ResultCache()
        plans = _Plans.of(job, text.text, cache) if not cuts else None
        known = plans.load() if plans is not None else None
        if known is not None:  # cut before: no nltk at all
            from gflite import chunking

            chunks = chunking.at(text.text, list(known))
        else:
            # Forced cuts (chapters, pauses) are planned whole; plain text is cut
            # as the engine asks for work (see chunkstream), the same cuts.
            streamed = None if cuts else stream_chunks(text.text, job)
            if streamed is None:
                chunks = plan_chunks(text.text, job, cuts)
                if plans is not None:
                    plans.store([c.start for c in chunks[1:]])
            elif plans is not None:
                streamed = plans.recording(streamed)
    by_offset = {cut.offset: cut for cut in cuts}
    sizes: dict[int, int] = {}
    by_index: dict[int, Subtask] = {}
    if streamed is None:
        at_chunk = {c.index: by_offset[c.start] for c in chunks if c.start in by_offset}
        tasks: Iterable[Subtask] = synth.subtasks(chunks, job.options, literal=job.source.kind == "text")
        sizes.update((c.index, len(c.text)) for c in chunks)
        by_index.update((t.index, t) for t in tasks)
        count, longest = len(chunks), _longest(chunks)
    else:
        at_chunk = {}
        # The count is an estimate, the longest chunk a bound.
        count, longest = _stream_estimate(len(text.text), job)
        tasks = _streamed_tasks(streamed, job, count, sizes, by_index)
    program = flite_program()
    limits = Limits(subtask_timeout=job.subtask_timeout or _timeout_for(longest, job),
                    stdio_bytes=Limits().stdio_bytes if streamed is not None else _printout_bytes(chunks, job))
    workers, asked = local_workers(job, count)
    market = Market(bid=job.bid, budget=job.budget)
    report = execution.TaskReport()

    done = {"chunks": 0, "cached": 0, "chars": 0, "audio": 0.0}

    def finished(result: SubtaskResult, from_cache: bool) -> None:
        done["chunks"] += 1
        done["cached"] += from_cache
        done["chars"] += sizes[result.index]
        if result.ok:
            done["audio"] += pieces.audio_seconds(result)
        if on_progress is not None:
            on_progress(
                Progress(
                    result=result,
                    from_cache=from_cache,
                    characters=sizes[result.index],
                    chunks_done=done["chunks"],
                    characters_done=done["chars"],
                    audio_seconds=done["audio"],
                )
            )

    lead: list[pieces.Lead] = []

    def started_on(executor: Executor) -> None:
        if streamed is not None:
            from gflite.gwasm.executors.local import LocalExecutor

            if isinstance(executor, LocalExecutor):
                # The workers fork and load flite.wasm while the text is cut
                # (Punkt's import and training come before the first chunk).
                executor.warm(program)
                lead.extend(pieces.Lead.start(writer, executor, program, limits, text.text, job, _target(job)))
        if on_plan is not None:
            on_plan(Plan(text=text, chunks=count, characters=len(text.text),
                         workers=len(executor.providers()), workers_asked=asked,
                         subtask_timeout=limits.subtask_timeout, chunks_estimated=streamed is not None))

    terms = execution.RunTerms(
        limits=limits, retries=job.retries, redundancy=job.redundancy, task_timeout=job.timeout,
        market=market, first_estimate=_estimate_for(longest, job), audit=job.audit,
        use_cache=job.use_cache)
    results = execution.run_task(program, tasks, terms, workers=workers, cluster=job.cluster,
                                 cache=cache, on_result=finished, report=report, on_start=started_on,
                                 files=True)
    marks = silences = 0
    timeline = None
    if job.options.timings:  # read-along hook
        from gflite import timings

        timeline = timings.Timeline(text.text, job.options.voice.rate, positions=job.source.kind != "text",
                                    ssml=job.options.ssml, origins=text.origins if job.source_spans else None)
        chunk_of = {c.index: c for c in chunks}
    try:
        for result in results:
            cut = at_chunk.get(result.index)
            if writer is not None and cut is not None:
                if cut.silence > 0:
                    writer.add_silence(cut.silence)
                    silences += 1
                if cut.chapter is not None:
                    writer.begin_chapter(cut.chapter)
                    marks += 1
            if timeline is not None:  # read-along hook: before the piece, after its pause
                timings.chunk_outputs(timeline, chunk_of[result.index], dict(result.outputs), cut,
                                      writer.samples if writer is not None else None)
            if writer is not None:
                after = lead.pop().join() if lead and result.index == 0 else None
                pieces.write_piece(writer, result, program, by_index, cache, after)
            if job.options.prints and on_printout is not None:
                if len(result.stdout) >= limits.stdio_bytes:
                    raise OutputError(f"flite printed more than {limits.stdio_bytes} bytes for {result.name}")
                on_printout(result.stdout)
            # The dispatcher drops each result's audio once handed over, so a
            # book is never held in memory.
        if writer is not None:
            pieces.verify(writer, program, by_index, cache)
    finally:
        results.close()  # type: ignore[attr-defined]
        for early in lead:
            early.stop()
    return Summary(
        chunks=len(sizes),
        from_cache=done["cached"],
        characters=len(text.text),
        audio_seconds=done["audio"],
        elapsed=time.monotonic() - started,
        output=job.output,
        report=report,
        replaced_words=replaced,
        chapters=marks,
        pauses=silences,
        timeline=timeline,
    )


# A chunk's first budget hold is this many times its expected cost (execution
# learns the real rate from the first result).
_ESTIMATE_MARGIN = 2
# The default per-chunk timeout: this many times the chunk's expected cost, and
# never under MIN_CHUNK_TIMEOUT, so a deterministic hang (flite itself loops on
# some inputs) is caught in seconds, not after 600 s, while a loaded machine
# (the estimate is already WASM_FACTOR on the safe side) never trips it.
TIMEOUT_MARGIN = 20
MIN_CHUNK_TIMEOUT = 30.0
# Local worker processes beyond this many per core only cost memory (each
# holds a wasmtime engine and a chunk's audio): -j is capped there.
WORKERS_PER_CORE = 2


# flite's printout (-pw, -ps, -psdur, -pr) per character of text, generously:
# -psdur is about 10 bytes a segment, -pr prints a whole relation.
_PRINTOUT_PER_CHAR = 256


def _printout_bytes(chunks: tuple[Chunk, ...], job: Job) -> int:
    """How much of a chunk's stdout to keep: Limits' default, or room for flite's printout."""
    default = Limits().stdio_bytes
    if not job.options.prints:
        return default
    return max(default, _PRINTOUT_PER_CHAR * _longest(chunks))


def _longest(chunks: tuple[Chunk, ...]) -> int:
    return max((len(c.text) for c in chunks), default=0)


def _estimate_for(longest: int, job: Job) -> float:
    return _ESTIMATE_MARGIN * voices.cpu_seconds(job.options.voice.cost_name, max(longest, 100))


def chunk_timeout(chunks: tuple[Chunk, ...], job: Job) -> float:
    """The default per-chunk timeout: TIMEOUT_MARGIN times the longest chunk's
    expected CPU time, at least MIN_CHUNK_TIMEOUT seconds."""
    return _timeout_for(_longest(chunks), job)


def _timeout_for(longest: int, job: Job) -> float:
    expected = voices.cpu_seconds(job.options.voice.cost_name, longest)
    return max(MIN_CHUNK_TIMEOUT, float(math.ceil(TIMEOUT_MARGIN * expected)))


# Texts longer than this are cut as the engine asks for chunks (chunkstream):
# below it, cutting the whole text first costs little (Punkt trains on this
# much anyway) and the plan's chunk count is exact.
STREAM_CHARS = 1 << 16
# A streamed chunk's length is bounded for the timeout and the budget by this
# many times the chunk size: growing cuts stop within 3/2 of their aim when a
# sentence or flite break allows, and flite breaks at least every 500 tokens.
_STREAM_BOUND = 3


def stream_chunks(text: str, job: Job) -> Iterator[Chunk] | None:
    """The text's chunks as they are cut, when the text is long and its cuts are
    :func:`plan_chunks`' growing cuts (the same ones); else None: plan them first
    (also for printouts and read-along timings, whose hooks take planned chunks)."""
    if (job.options.ssml or job.source.kind == "text" or job.subtasks is not None
            or job.options.prints or job.options.timings or len(text) <= STREAM_CHARS):
        return None
    from gflite import chunkstream

    return chunkstream.chunks(text, _target(job))


def _target(job: Job) -> int:
    return job.target_chars or min(voices.chunk_chars(job.options.voice.cost_name), voices.MEMORY_CHUNK_CHARS)


def _stream_estimate(characters: int, job: Job) -> tuple[int, int]:
    """(about how many chunks, at most how long one is) for a streamed text."""
    from gflite import chunking

    # The growing cuts' aims; a chunk ends on average at about 0.82 of its aim
    # (measured on the benchmark book: 144 chunks for kal16, 440 for slt).
    target = _target(job)
    first = max(1, target // chunking.FIRST_CHUNK_DIVISOR)
    count, pos, size = 1, 0, first
    while True:
        aim = min(size, max(first, (characters - pos) / chunking.TAPER_DIVISOR))
        if characters - pos <= aim * 1.5:
            break
        count, pos, size = count + 1, pos + 0.82 * aim, min(target, size * 2)
    return count, min(characters, _STREAM_BOUND * target)


@dataclass(frozen=True)
class _Plans:
    """The cut plan of one text and job in the result cache (see gflite.cutplan)."""

    cache: ResultCache
    key: str
    text: str

    @classmethod
    def of(cls, job: Job, text: str, cache: ResultCache | None) -> _Plans | None:
        """None when the job's cuts are not worth keeping: no cache; -t, SSML, a
        single chunk and a text one chunk holds (all cut without nltk)."""
        if cache is None or not job.use_cache or job.options.ssml or job.source.kind == "text" \
                or job.subtasks == 1:
            return None
        from gflite import chunking, cutplan

        if len(text) <= max(1, _target(job) // chunking.FIRST_CHUNK_DIVISOR) * 1.5:
            return None

        return cls(cache, cutplan.key(text, target_chars=_target(job), subtasks=job.subtasks), text)

    def load(self) -> tuple[int, ...] | None:
        from gflite import cutplan

        return cutplan.load(self.cache, self.key, self.text)

    def store(self, cuts: list[int]) -> None:
        from gflite import cutplan

        cutplan.store(self.cache, self.key, self.text, cuts)

    def recording(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        """``chunks`` as they come; once the last is cut, their plan is stored."""
        starts = []
        for c in chunks:
            if c.index:
                starts.append(c.start)
            yield c
        self.store(starts)


def _streamed_tasks(chunks: Iterator[Chunk], job: Job, count: int, sizes: dict[int, int],
                    by_index: dict[int, Subtask]) -> Iterator[Subtask]:
    width = max(5, len(str(count)))
    for c in chunks:
        sizes[c.index] = len(c.text)
        task = by_index[c.index] = synth.subtask(c, job.options, width=width)
        yield task


def local_workers(job: Job, chunks: int) -> tuple[int | None, int | None]:
    """(workers to start, the -j asked for if it was over the per-core cap, else None).

    Local workers are capped at WORKERS_PER_CORE per core and at the number of
    chunks (more could never be busy); with a cluster, -j does not apply.
    """
    if job.cluster or job.workers is None:
        return job.workers, None
    from gflite.gwasm.executors import default_workers

    # Redundancy needs its k distinct slots whatever the cores or chunks.
    per_cores = max(WORKERS_PER_CORE * default_workers(), job.redundancy)
    busy = chunks if job.redundancy == 1 else per_cores
    workers = max(1, min(job.workers, per_cores, busy))
    return workers, (job.workers if job.workers > per_cores else None)


