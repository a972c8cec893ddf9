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

Inside a worker, each attempt (loading or compiling the program included) runs
under an address-space cap (RLIMIT_AS): what the process maps already plus
:func:`sandbox.compile_headroom` while it loads the program, plus
:func:`sandbox.run_headroom` while the guest runs, so neither a guest nor a
module that takes gigabytes to compile can take the machine's memory.

Nothing one attempt does can stop the dispatcher: its bookkeeping errors fail
that attempt only, and a slot whose attempt directory cannot be removed is
retired (it takes no more work, and its attempt's result says why).

Workers start lazily, min(workers, pending), so a one-subtask job starts one,
unless :meth:`LocalExecutor.warm` starts them all (and loads the program)
ahead of the first attempt.
They are forked from the parent when that is safe (no other threads exist, so
no lock can be held by a thread that will not exist in the child); otherwise
a fresh interpreter is started. The parent never imports wasmtime.
A caller that knows early it will run locally may :func:`prestart` one worker:
it imports wasmtime (most of a worker's start) while the caller still prepares
its task, and the next executor adopts it as its first worker.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import threading
import queue
import time
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from gflite.gwasm import guestfs, sandbox
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.spool import Spool
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

# Time a worker may spend loading (at worst compiling) a program before the
# subtask's own time limit starts counting.
LOAD_GRACE = 300.0

_HEADER = struct.Struct("!Q")

# The dispatcher threads alive in this process: the only threads that may exist
# when we fork (they hold no lock a child needs).
_dispatchers: set[threading.Thread] = set()
_dispatchers_lock = threading.Lock()


# --- the pipe protocol: 8-byte length, then a pickle ------------------------


def _send(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv(fd: int) -> object | None:
    """The next message, or None if the other end is gone."""
    try:
        header = _read_exact(fd, _HEADER.size)
        if header is None:
            return None
        data = _read_exact(fd, _HEADER.unpack(header)[0])
    except OSError:
        return None
    return None if data is None else pickle.loads(data)


# --- the worker side ---------------------------------------------------------


def _harden(parent_pid: int) -> None:
    """Set up a worker: deaf to the terminal's Ctrl-C (the parent decides), dies
    with its parent, no core files, EFBIG instead of SIGXFSZ."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform == "linux":
        # glibc gives each thread (wasmtime compiles on one per core) a 64 MiB
        # heap arena of address space; cap them, or RLIMIT_AS would depend on
        # the number of cores.
        import ctypes

        m_arena_max = -8
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).mallopt(m_arena_max, 2)


def _mapped_bytes() -> int | None:
    """This process's address space in use (Linux), or None if unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _soft_limit(which: str, want: int | None) -> Iterator[None]:
    """Lower the soft limit ``resource.RLIMIT_<which>`` to ``want`` (never above the
    hard limit) while one attempt loads or runs; restored afterwards. Where the
    limit cannot be set (not Linux, ``want`` unknown) the attempt runs without it."""
    try:
        import resource

        kind = getattr(resource, f"RLIMIT_{which}")
        soft, hard = resource.getrlimit(kind)
        if want is None:
            raise ValueError(f"no value for RLIMIT_{which}")
        resource.setrlimit(kind, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    except (ImportError, AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(kind, (soft, hard))


def _address_space_cap(headroom: int) -> contextlib.AbstractContextManager[None]:
    """Cap this process's address space at what it maps now plus ``headroom``."""
    mapped = _mapped_bytes()
    return _soft_limit("AS", None if mapped is None else mapped + headroom)


def _file_size_limit(limit: int) -> contextlib.AbstractContextManager[None]:
    """Cap every file this process writes at ``limit + 1`` bytes while the guest runs."""
    return _soft_limit("FSIZE", limit + 1)


def _warm_up() -> None:
    """Import what loading a program needs (wasmtime most of all), before any job
    comes: outside any attempt's caps, as in a worker that already ran one. An
    import that fails here fails again, and is reported, when the program loads."""
    with contextlib.suppress(Exception):
        import platform  # noqa: F401  (the module cache's key)

        import wasmtime  # noqa: F401

        from gflite.gwasm import cache  # noqa: F401


def _worker_loop(job_fd: int, result_fd: int, parent_pid: int, warm: bool = False) -> None:
    _harden(parent_pid)
    if warm:
        _warm_up()
    while True:
        job = _recv(job_fd)
        if job is None:
            return
        if len(job) == 2 and job[0] == "load":  # type: ignore[arg-type,index]
            # LocalExecutor.warm: load now, before any attempt; a failure is
            # met again, and reported, by the first attempt.
            with contextlib.suppress(Exception), _address_space_cap(sandbox.compile_headroom()):
                sandbox.load_module(job[1])  # type: ignore[index]
            continue
        program, subtask, limits, workdir, provider, spool = job  # type: ignore[misc]
        try:
            # Load (at worst compile) under its own cap and before the
            # file-size cap: a cache miss writes the compiled module.
            failed: tuple[str, Failure] | None = None
            try:
                with _address_space_cap(sandbox.compile_headroom()):
                    sandbox.load_module(program)
            except Exception as exc:  # never compiled again under the larger cap below
                failed = sandbox.load_failure(exc)
            _send(result_fd, ("started", None))
            if failed is not None:
                reason, failure = failed
                result = SubtaskResult.failed(subtask, reason, failure, provider=provider)
            else:
                with _address_space_cap(sandbox.run_headroom(limits)), _file_size_limit(limits.output_bytes):
                    result = sandbox.execute(program, subtask, limits, Path(workdir), provider=provider,
                                             spool=spool)
        except BrokenPipeError:
            return
        except MemoryError:
            result = SubtaskResult.failed(subtask, "memory limit exceeded (the worker's address-space cap)",
                                          Failure.LIMIT, provider=provider)
        except Exception as exc:  # a bug here must not look like a hung worker
            result = SubtaskResult.failed(subtask, f"worker error: {type(exc).__name__}: {exc}",
                                          Failure.LOST, provider=provider)
        try:
            _send(result_fd, ("result", result))
        except BrokenPipeError:
            return


def _worker_entry(argv: list[str]) -> None:
    """Entry point of a worker started as a fresh interpreter."""
    code = 0
    try:
        _worker_loop(int(argv[0]), int(argv[1]), int(argv[2]))
    except BaseException:
        code = 70
    finally:
        os._exit(code)


# --- the parent side ---------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    job_fd: int
    result_fd: int
    proc: object | None = None  # subprocess.Popen when started as a fresh interpreter

    def _close(self, which: str) -> None:
        # Each fd is closed once: a second close could hit a reused number.
        fd = getattr(self, which)
        if fd >= 0:
            setattr(self, which, -1)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _exited(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is not None  # type: ignore[attr-defined]
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return True

    def kill(self) -> None:
        # The worker is our child and not yet reaped, so the pid cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._close("job_fd")
        self._close("result_fd")
        if self.proc is not None:
            self.proc.wait()  # type: ignore[attr-defined]
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)

    def stop(self) -> None:
        """Ask an idle worker to exit (EOF on its job pipe); kill it if it lingers."""
        self._close("job_fd")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if self._exited():
                self._close("result_fd")
                return
            time.sleep(0.005)
        self.kill()


def _fork_is_safe() -> bool:
    """True if this process has no threads besides the main one and our dispatchers.

    Counted by the kernel, so native threads (wasmtime's I/O runtime after an
    in-process guest run, Dask, tqdm's monitor) count too."""
    if sys.platform != "linux":
        return False
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return False
    with _dispatchers_lock:
        ours = sum(1 for t in _dispatchers if t.is_alive())
    return threads <= 1 + ours


def _close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, max(os.sysconf("SC_OPEN_MAX"), low + 1) if hasattr(os, "sysconf") else 65536)


def _fork_worker(warm: bool = False) -> _Worker:
    parent = os.getpid()
    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded fork"
        pid = os.fork()
    if pid == 0:  # the worker; it never returns into the parent's code
        code = 0
        try:
            _close_fds_except({job_r, result_w})
            null = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(null, std)
            _worker_loop(job_r, result_w, parent, warm)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(job_r)
    os.close(result_w)
    return _Worker(pid=pid, job_fd=job_w, result_fd=result_r)


# A worker forked ahead of need by prestart(), with the environment it was forked
# in; the next executor that starts a worker adopts it.
_spare: tuple[_Worker, dict[str, str]] | None = None
_spare_lock = threading.Lock()


def prestart() -> None:
    """Fork one worker now, if that is safe, so it imports wasmtime while this
    process still prepares its task; the next :class:`LocalExecutor` to start a
    worker (fork or default start method) adopts it. :func:`discard_spare` ends
    it if none does."""
    global _spare
    with _spare_lock:
        if _spare is not None or not _fork_is_safe():
            return
        _spare = (_fork_worker(warm=True), dict(os.environ))


def discard_spare() -> None:
    """Kill the worker :func:`prestart` made, if no executor adopted it (it holds nothing)."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None:
        spare[0].kill()


def _take_spare() -> _Worker | None:
    """The prestarted worker, if alive and forked in the environment this process has now."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is None:
        return None
    worker, env = spare
    if worker._exited():  # reaped by that check: only its pipes are left to close
        worker._close("job_fd")
        worker._close("result_fd")
        return None
    if env != dict(os.environ):
        worker.kill()
        return None
    return worker


def _exec_worker() -> _Worker:
    import subprocess

    import gflite

    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    env = dict(os.environ)
    # Make the worker import this same gflite, installed or not.
    root = str(Path(gflite.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "import sys; from gflite.gwasm.executors.local import _worker_entry; _worker_entry(sys.argv[1:])"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(job_r), str(result_w), str(os.getpid())],
            pass_fds=(job_r, result_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    finally:
        os.close(job_r)
        os.close(result_w)
    return _Worker(pid=proc.pid, job_fd=job_w, result_fd=result_r, proc=proc)


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
    index: int
    worker: _Worker | None = None
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
                with _dispatchers_lock:
                    _dispatchers.update((self._thread, self._janitor))
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
                    _send(slot.worker.job_fd, ("load", program))
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
            with _dispatchers_lock:
                _dispatchers.discard(threading.current_thread())

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
            workdir = attempt.workdir = Path(tempfile.mkdtemp(prefix="gwasm-attempt-"))
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
                _send(slot.worker.job_fd, job)
                return
            except OSError as exc:
                if slot.worker is not None:
                    slot.worker.kill()
                    slot.worker = None
                error = exc
        why = f"cannot start a worker process: {error}"
        self._finish(slot, self._failure(slot, attempt, why, Failure.LOST))

    def _spawn(self) -> _Worker:
        # A prestarted worker was forked when that was safe, whatever the threads now.
        spare = _take_spare() if self.start_method in (None, "fork") else None
        method = "fork" if spare is not None else self.start_method or ("fork" if _fork_is_safe() else "exec")
        worker = spare or (_fork_worker() if method == "fork" else _exec_worker())
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
        message = _recv(slot.worker.result_fd)
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
            with _dispatchers_lock:
                _dispatchers.discard(threading.current_thread())

    @staticmethod
    def _settle(attempt: _Attempt, result: SubtaskResult) -> None:
        if not attempt.future.done():
            attempt.future.set_result(result)
        # Break the future <-> attempt cycle, or every result's audio would live
        # until a full garbage collection (a whole book, for gflite).
        attempt.future._attempt = None  # type: ignore[attr-defined]

    def _shutdown(self) -> None:
        for slot in self._slots:
            if slot.attempt is not None:
                attempt = slot.attempt
                self._kill(slot)
                self._finish(slot, self._failure(slot, attempt, "cancelled: executor closed", Failure.CANCELLED))
            elif slot.worker is not None:
                slot.worker.stop()
                slot.worker = None
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
