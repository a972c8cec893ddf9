"""Run subtasks on this machine: N long-lived worker processes, one guest at a time each.

Why processes: a guest in an infinite loop cannot be interrupted from inside
without epoch or fuel checks compiled into it (they slow flite down by up to
85 % and 180 %), but a process can always be killed. Each worker loads a program once
(from the compiled-module cache) and runs the subtasks sent over its pipe.
A dispatcher thread in the parent

- writes each attempt's inputs into a fresh private directory (so it knows
  where to look and what to clean up), removed when the attempt ends,
- enforces the per-subtask wall-time limit by SIGKILLing the worker,
- polls the attempt's directory and kills a worker whose guest writes more than
  the output limit: bytes, entries or depth (inside the worker RLIMIT_FSIZE caps
  each single file too),
- replaces a dead worker only when there is work for it.

The worker processes themselves (started, spoken to, and what runs inside
one, under its own caps) are :mod:`gflite.gwasm.workers`.

Nothing one attempt does can stop the dispatcher: its bookkeeping errors fail
that attempt only, and a slot whose attempt directory cannot be removed is
retired (it takes no more work, and its attempt's result says why).

Workers start lazily, min(workers, pending), so a one-subtask job starts one,
unless :meth:`LocalExecutor.warm` starts them all (and loads the program)
ahead of the first attempt.
They are forked from the parent when that is safe, else started as fresh
interpreters. A caller that knows early it will run locally may
:func:`gflite.gwasm.workers.prestart` one worker: it imports wasmtime (most of a
worker's start) while the caller still prepares its task, and the next
executor adopts it as its first worker.
"""
from __future__ import annotations

import contextlib
import os
import queue
import select
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from gflite.gwasm import guestfs, leftovers, sandbox
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.spool import Spool
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult
from gflite.gwasm.workers import (
    Worker,
    dispatchers,
    dispatchers_lock,
    exec_worker,
    fork_is_safe,
    fork_worker,
    recv,
    send,
    take_spare,
)

# Time a worker may spend loading (at worst compiling) a program before the
# subtask's own time limit starts counting.
LOAD_GRACE = 300.0


class _LocalFuture(Future):  # type: ignore[type-arg]
    """A Future whose cancel() also stops a running attempt (by killing its worker)."""

    def __init__(self, executor: LocalExecutor) -> None:
        super().__init__()
        self._executor = executor

    def cancel(self) -> bool:
        if super().cancel():
            return True
        self._executor._abort(self)
        return False


@dataclass
class _Attempt:
    """One run of a subtask in a worker, as the dispatcher tracks it."""
    program: Program
    subtask: Subtask
    limits: Limits
    slot: int | None  # pinned provider slot, or None for any
    future: _LocalFuture
    workdir: Path | None = None
    baseline: guestfs.Usage = guestfs.Usage()
    started: float = 0.0
    deadline: float = 0.0
    abort: bool = False
    loading: bool = True  # until the worker says the program is loaded
    guest_started: float = 0.0  # when it did: what a failed attempt's seconds count from


@dataclass
class _Slot:
    """One worker slot (provider ``local-N``): its process and what it runs now."""
    index: int
    worker: Worker | None = None
    attempt: _Attempt | None = None
    retired: str = ""  # why this slot takes no more work, once it does not
    cleaning: bool = False  # its last attempt's directory is still being removed

    @property
    def provider(self) -> str:
        return f"local-{self.index}"


def _seconds(s: float) -> str:
    return f"{s:g} s"


class LocalExecutor(Executor):
    """Runs attempts in up to ``workers`` local worker processes (default: all cores).

    Providers are the worker slots ``local-0`` .. ``local-{N-1}``; pinning an
    attempt to one runs it in that slot's process. ``files``: successful
    outputs are :class:`~gflite.gwasm.spool.OutputFile`s in :attr:`spool`
    (valid until close), not bytes.
    """

    on_this_machine = True

    def __init__(
        self,
        workers: int | None = None,
        *,
        poll_interval: float = 0.05,
        start_method: str | None = None,
        files: bool = False,
    ) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError("workers must be at least 1")
        if start_method not in (None, "fork", "exec"):
            raise ValueError(f"unknown start method {start_method!r}")
        self.workers = n
        self.poll_interval = poll_interval
        self.start_method = start_method
        self.spawned = 0  # worker processes started so far, for tests and diagnostics
        self.start_methods: list[str] = []  # how each was started: "fork" or "exec"
        # files: outputs come back as OutputFiles moved into this spool (on the
        # attempt directories' filesystem), removed with it at close; the pipe
        # from a worker carries only their names and digests.
        # What a killed run of gwasm left in the temporary directory goes first.
        leftovers.sweep_once()
        self.spool = Spool() if files else None
        self._slots = [_Slot(i) for i in range(n)]
        self._queue: deque[_Attempt] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._crash: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._janitor: threading.Thread | None = None
        self._cleanups: queue.SimpleQueue[tuple[_Slot, _Attempt, SubtaskResult] | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- Executor API

    def providers(self) -> tuple[Provider, ...]:
        return tuple(Provider(slot.provider) for slot in self._slots if not slot.retired)

    @property
    def retired(self) -> dict[str, str]:
        """Slots that take no more work, and why (their last attempt says so too)."""
        return {slot.provider: slot.retired for slot in self._slots if slot.retired}

    def submit(
        self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None
    ) -> Future[SubtaskResult]:
        pinned = None
        if provider is not None:
            names = [slot.provider for slot in self._slots]
            if provider not in names:
                raise ValueError(f"unknown provider {provider!r}; have {', '.join(names)}")
            pinned = names.index(provider)
        future = _LocalFuture(self)
        attempt = _Attempt(program, subtask, limits, pinned, future)
        future._attempt = attempt  # type: ignore[attr-defined]
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is closed")
            if self._crash is not None:
                raise RuntimeError(f"local executor failed: {self._crash}")
            self._queue.append(attempt)
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="gwasm-local-dispatcher", daemon=True)
                self._janitor = threading.Thread(target=self._clean, name="gwasm-local-janitor", daemon=True)
                with dispatchers_lock:
                    dispatchers.update((self._thread, self._janitor))
                self._janitor.start()
                self._thread.start()
        self._wake()
        return future

    def warm(self, program: Program) -> None:
        """Start every worker now, each loading ``program`` (wasmtime and the
        compiled module), while the requestor is still busy, e.g. cutting the
        text: the first attempts then find their workers ready. Only before
        the first submit (the workers are forked from the calling thread,
        before the dispatcher's exist); later it does nothing."""
        with self._lock:
            if self._closed or self._thread is not None:
                return
            for slot in self._slots:
                if slot.worker is not None or slot.retired:
                    continue
                try:
                    slot.worker = self._spawn()
                    send(slot.worker.job_fd, ("load", program))
                except OSError:  # the first attempt starts one as usual
                    self._kill(slot)

    def close(self) -> None:
        with self._lock:
            if self._closed and self._wake_w < 0:
                return
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join()
        with self._lock:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.spool is not None:
            self.spool.close()

    # -- called from other threads

    def _wake(self) -> None:
        with self._lock:  # never write to a closed (possibly reused) fd number
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"!")

    def _abort(self, future: _LocalFuture) -> None:
        with self._lock:
            attempt = getattr(future, "_attempt", None)
            if attempt is not None and not future.done():
                attempt.abort = True
        self._wake()

    # -- the dispatcher thread

    def _dispatch(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        break
                    starts, orphans = self._assign()
                for attempt in orphans:
                    self._settle(attempt, self._failure(None, attempt, "no worker slot left to run it", Failure.LOST))
                for slot, attempt in starts:
                    self._guard(slot, self._start, slot, attempt)
                self._wait()
                for slot in self._slots:
                    self._guard(slot, self._police, slot)
        except BaseException as exc:  # a bug in the loop itself: never leave callers waiting
            self._crash = exc
        finally:
            self._shutdown()
            with dispatchers_lock:
                dispatchers.discard(threading.current_thread())

    def _guard(self, slot: _Slot, step, *args) -> None:  # type: ignore[no-untyped-def]
        """Run one slot's bookkeeping step; an error in it fails that slot's
        attempt (and retires the slot if even that fails), never the dispatcher."""
        try:
            step(*args)
        except Exception as exc:
            attempt = slot.attempt
            if attempt is None:
                return
            with contextlib.suppress(Exception):
                self._kill(slot)
            why = f"executor error: {type(exc).__name__}: {exc}"
            try:
                self._finish(slot, self._failure(slot, attempt, why, Failure.LOST))
            except Exception as again:
                slot.attempt = None
                slot.retired = slot.retired or f"{type(again).__name__}: {again}"
                self._settle(attempt, self._failure(slot, attempt, why, Failure.LOST))

    def _assign(self) -> tuple[list[tuple[_Slot, _Attempt]], list[_Attempt]]:
        """Match queued attempts to free slots, warm workers first; take out the
        attempts no slot will ever run. Holds the lock."""
        starts = []
        live = {s.index for s in self._slots if not s.retired}
        orphans = [a for a in self._queue if (a.slot not in live if a.slot is not None else not live)]
        for attempt in orphans:
            self._queue.remove(attempt)
        free = sorted(
            (s for s in self._slots if s.attempt is None and not s.retired and not s.cleaning),
            key=lambda s: (s.worker is None, s.index),
        )
        for slot in free:
            for attempt in list(self._queue):
                if attempt.slot not in (None, slot.index):
                    continue
                self._queue.remove(attempt)
                if attempt.future.set_running_or_notify_cancel():
                    slot.attempt = attempt
                    starts.append((slot, attempt))
                    break
        return starts, [a for a in orphans if a.future.set_running_or_notify_cancel()]

    def _start(self, slot: _Slot, attempt: _Attempt) -> None:
        now = time.monotonic()
        attempt.started = now
        attempt.deadline = now + LOAD_GRACE + attempt.limits.subtask_timeout
        try:
            # One private directory per attempt, removed when it ends: a killed
            # executor leaves at most the attempts it was running.
            workdir = attempt.workdir = Path(tempfile.mkdtemp(prefix=leftovers.prefix("attempt")))
            sandbox.materialise(attempt.subtask, workdir)
            attempt.baseline = guestfs.usage(workdir)
        except ValueError as exc:
            self._finish(slot, self._failure(slot, attempt, f"bad input: {exc}", Failure.BAD_INPUT))
            return
        except OSError as exc:
            why = f"cannot prepare the subtask's directory: {exc}"
            self._finish(slot, self._failure(slot, attempt, why, Failure.LOST))
            return
        job = (
            attempt.program,
            replace(attempt.subtask, inputs=()),  # they are on disk already
            attempt.limits,
            str(workdir),
            slot.provider,
            None if self.spool is None else str(self.spool.root),
        )
        for _ in range(2):  # an idle worker may have died; replace it once
            try:
                if slot.worker is None:
                    slot.worker = self._spawn()
                send(slot.worker.job_fd, job)
                return
            except OSError as exc:
                if slot.worker is not None:
                    slot.worker.kill()
                    slot.worker = None
                error = exc
        why = f"cannot start a worker process: {error}"
        self._finish(slot, self._failure(slot, attempt, why, Failure.LOST))

    def _spawn(self) -> Worker:
        # A prestarted worker was forked when that was safe, whatever the threads now.
        spare = take_spare() if self.start_method in (None, "fork") else None
        method = "fork" if spare is not None else self.start_method or ("fork" if fork_is_safe() else "exec")
        worker = spare or (fork_worker() if method == "fork" else exec_worker())
        self.spawned += 1
        self.start_methods.append(method)
        return worker

    def _wait(self) -> None:
        """Sleep until a worker reports, the dispatcher is woken, or it is time to police."""
        busy = {s.worker.result_fd: s for s in self._slots if s.attempt is not None and s.worker is not None}
        timeout = None
        if busy:
            nearest = min(s.attempt.deadline for s in busy.values())  # type: ignore[union-attr]
            timeout = max(0.0, min(self.poll_interval, nearest - time.monotonic()))
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for fd in busy:
            poller.register(fd, select.POLLIN)
        events = poller.poll(None if timeout is None else timeout * 1000)
        for fd, _ in events:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            self._guard(busy[fd], self._receive, busy[fd])

    def _receive(self, slot: _Slot) -> None:
        attempt = slot.attempt
        if attempt is None or slot.worker is None:
            return
        message = recv(slot.worker.result_fd)
        if message is None:
            self._kill(slot)
            if attempt.loading:
                # Compiling past the address-space cap makes wasmtime abort.
                why = "worker process died while loading the program (over the memory cap for compiling it?)"
                self._finish(slot, self._failure(slot, attempt, why, Failure.LIMIT))
            else:
                self._finish(slot, self._failure(slot, attempt, "worker process died unexpectedly", Failure.LOST))
        elif message[0] == "started":  # type: ignore[index]
            attempt.loading = False
            attempt.guest_started = time.monotonic()
            attempt.deadline = attempt.guest_started + attempt.limits.subtask_timeout
        else:
            self._finish(slot, message[1])  # type: ignore[index]

    def _police(self, slot: _Slot) -> None:
        """Kill the slot's attempt if it was cancelled, ran out of time or writes too much."""
        attempt = slot.attempt
        if attempt is None or slot.worker is None:
            return
        failure = Failure.LIMIT
        if attempt.abort:
            reason, failure = "cancelled", Failure.CANCELLED
        elif time.monotonic() > attempt.deadline:
            reason = f"timeout: subtask time limit of {_seconds(attempt.limits.subtask_timeout)} exceeded"
            failure = Failure.TIMEOUT
        elif attempt.workdir is not None:
            # Bounded work: the walk stops at the first limit broken.
            found = guestfs.usage(attempt.workdir, attempt.baseline, attempt.limits)
            reason = found.over(attempt.baseline, attempt.limits)
            if not reason:
                return
        else:
            return
        self._kill(slot)
        self._finish(slot, self._failure(slot, attempt, reason, failure))

    def _kill(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.kill()
            slot.worker = None

    @staticmethod
    def _failure(slot: _Slot | None, attempt: _Attempt, reason: str, failure: Failure) -> SubtaskResult:
        return SubtaskResult.failed(
            attempt.subtask, reason, failure, provider=slot.provider if slot is not None else "local",
            # Like the sandbox's CPU seconds, counted from the guest's start
            # (loading the program is the provider's business).
            seconds=time.monotonic() - attempt.guest_started if attempt.guest_started else 0.0,
        )

    def _finish(self, slot: _Slot, result: SubtaskResult) -> None:
        """End the slot's attempt with ``result`` once its directory is removed.

        Removal runs on the janitor thread (thousands of directories take
        seconds on some disks, and the dispatcher must keep time for the other
        slots); the slot takes no new attempt until it is done."""
        attempt = slot.attempt
        slot.attempt = None
        if attempt is None:
            return
        if attempt.workdir is None:
            self._settle(attempt, result)
            return
        slot.cleaning = True
        self._cleanups.put((slot, attempt, result))

    def _clean(self) -> None:
        """The janitor thread: removes finished attempts' directories, then
        settles their futures. A directory that cannot be removed retires its
        slot: its disk is no longer known to be clean, so it takes no more
        work, and the attempt fails saying so (the engine retries it elsewhere)."""
        try:
            while (item := self._cleanups.get()) is not None:
                slot, attempt, result = item
                try:
                    guestfs.remove_tree(attempt.workdir)  # type: ignore[arg-type]
                except BaseException as exc:  # RecursionError included, were there a bug
                    slot.retired = f"cannot remove {attempt.workdir}: {exc}"
                    why = f"provider {slot.provider} cannot clean up after this attempt and takes no more work: "
                    result = self._failure(slot, attempt, why + slot.retired, Failure.LOST)
                slot.cleaning = False
                with contextlib.suppress(Exception):
                    self._settle(attempt, result)
                self._wake()
        finally:
            with dispatchers_lock:
                dispatchers.discard(threading.current_thread())

    @staticmethod
    def _settle(attempt: _Attempt, result: SubtaskResult) -> None:
        if not attempt.future.done():
            attempt.future.set_result(result)
        # Break the future <-> attempt cycle, or every result's audio would live
        # until a full garbage collection (a whole book, for gflite).
        attempt.future._attempt = None  # type: ignore[attr-defined]

    def _shutdown(self) -> None:
        idle = []
        for slot in self._slots:
            if slot.attempt is not None:
                attempt = slot.attempt
                self._kill(slot)
                self._finish(slot, self._failure(slot, attempt, "cancelled: executor closed", Failure.CANCELLED))
            elif slot.worker is not None:
                slot.worker.ask_to_stop()  # all at once: they exit side by side
                idle.append(slot.worker)
                slot.worker = None
        for worker in idle:
            worker.wait_stopped()
        self._cleanups.put(None)
        if self._janitor is not None:
            self._janitor.join()
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        for attempt in queued:
            if self._crash is None:
                attempt.future.cancel()
            elif not attempt.future.done():
                attempt.future.set_exception(RuntimeError(f"local executor failed: {self._crash}"))
