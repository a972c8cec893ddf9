"""Local worker processes: started, spoken to and ended; and what runs inside one.

A worker is a process that loads a program (wasmtime and the compiled module)
and runs the subtasks it is sent over a pipe, one at a time, under caps it sets
on itself; :class:`gflite.gwasm.executors.local.LocalExecutor` schedules them.
This module is what a console script needs to fork one ahead of need
(:func:`prestart`), so it imports nothing heavy: what a worker needs to run a
guest it imports after the fork, in parallel with the parent's own start-up.

Inside a worker, each attempt (loading or compiling the program included) runs
under an address-space cap (RLIMIT_AS): what the process maps already plus
:func:`sandbox.compile_headroom` while it loads the program, plus
:func:`sandbox.run_headroom` while the guest runs, so neither a guest nor a
module that takes gigabytes to compile can take the machine's memory.

Workers are forked from the parent when that is safe (no other threads exist,
so no lock can be held by a thread that will not exist in the child); otherwise
a fresh interpreter is started. The parent never imports wasmtime.
"""
from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Iterator

_HEADER = struct.Struct("!Q")

# The dispatcher threads alive in this process (LocalExecutor's): the only threads
# that may exist when we fork (they hold no lock a child needs).
dispatchers: set[threading.Thread] = set()
dispatchers_lock = threading.Lock()


# --- the pipe protocol: 8-byte length, then a pickle ------------------------


def send(fd: int, obj: object) -> None:
    import pickle  # here, not above: prestart() forks before the parent needs it

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


def recv(fd: int) -> object | None:
    """The next message, or None if the other end is gone."""
    try:
        header = _read_exact(fd, _HEADER.size)
        if header is None:
            return None
        data = _read_exact(fd, _HEADER.unpack(header)[0])
    except OSError:
        return None
    import pickle

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

        from gflite.gwasm import cache  # noqa: F401  (sandbox and subtask: imported by the loop)


def _worker_loop(job_fd: int, result_fd: int, parent_pid: int, warm: bool = False) -> None:
    _harden(parent_pid)
    # Imported here, after the fork: the parent forked as early as it could.
    from pathlib import Path

    from gflite.gwasm import sandbox
    from gflite.gwasm.subtask import Failure, SubtaskResult

    if warm:
        _warm_up()
    while True:
        job = recv(job_fd)
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
            send(result_fd, ("started", None))
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
            send(result_fd, ("result", result))
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


def default_workers() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Worker:
    """One worker process, as its parent sees it: its pid and its two pipes."""

    __slots__ = ("pid", "job_fd", "result_fd", "proc")

    def __init__(self, pid: int, job_fd: int, result_fd: int, proc: object | None = None) -> None:
        self.pid = pid
        self.job_fd = job_fd
        self.result_fd = result_fd
        self.proc = proc  # subprocess.Popen when started as a fresh interpreter

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
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self) -> None:
        """EOF on the job pipe: an idle worker exits when it reads it."""
        self._close("job_fd")

    def wait_stopped(self, grace: float = 2.0) -> None:
        """Reap a worker :meth:`ask_to_stop` was called on; kill it if it lingers
        past ``grace`` seconds. Woken by the exit itself where the kernel can
        say (a pidfd), not by a polling tick."""
        deadline = time.monotonic() + grace
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux 5.3+, or already reaped
            pidfd = -1
        try:
            while True:
                if self._exited():
                    self._close("result_fd")
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if pidfd >= 0:
                    import select

                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(left, 0.005))
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        self.kill()


def fork_is_safe() -> bool:
    """True if this process has no threads besides the main one and our dispatchers.

    Counted by the kernel, so native threads (wasmtime's I/O runtime after an
    in-process guest run, Dask, tqdm's monitor) count too."""
    if sys.platform != "linux":
        return False
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return False
    with dispatchers_lock:
        ours = sum(1 for t in dispatchers if t.is_alive())
    return threads <= 1 + ours


def _close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, max(os.sysconf("SC_OPEN_MAX"), low + 1) if hasattr(os, "sysconf") else 65536)


def fork_worker(warm: bool = False) -> Worker:
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
    return Worker(pid=pid, job_fd=job_w, result_fd=result_r)


# A worker forked ahead of need by prestart(), with the environment it was forked
# in; the next executor that starts a worker adopts it.
_spare: tuple[Worker, dict[str, str]] | None = None
_spare_lock = threading.Lock()


def prestart() -> None:
    """Fork one worker now, if that is safe, so it imports wasmtime while this
    process still prepares its task; the next :class:`LocalExecutor` to start a
    worker (fork or default start method) adopts it. :func:`discard_spare` ends
    it if none does."""
    global _spare
    with _spare_lock:
        if _spare is not None or not fork_is_safe():
            return
        _spare = (fork_worker(warm=True), dict(os.environ))


def preload(program: object) -> None:
    """Have the worker :func:`prestart` made load ``program`` (a
    :class:`~gflite.gwasm.subtask.Program`) as soon as it has wasmtime, before
    its first attempt asks for it. Does nothing without a spare; a load that
    fails is met again, and reported, by the first attempt."""
    with _spare_lock:
        if _spare is None:
            return
        try:
            send(_spare[0].job_fd, ("load", program))
        except OSError:  # it died: take_spare() finds that out
            pass


def discard_spare() -> None:
    """Kill the worker :func:`prestart` made, if no executor adopted it (it holds nothing)."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None:
        spare[0].kill()


def take_spare() -> Worker | None:
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


def exec_worker() -> Worker:
    import subprocess

    import gflite

    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    env = dict(os.environ)
    # Make the worker import this same gflite, installed or not.
    root = os.path.dirname(os.path.dirname(os.path.realpath(gflite.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "import sys; from gflite.gwasm.workers import _worker_entry; _worker_entry(sys.argv[1:])"
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
    return Worker(pid=proc.pid, job_fd=job_w, result_fd=result_r, proc=proc)


