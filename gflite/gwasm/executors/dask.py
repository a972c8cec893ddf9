"""Run subtask attempts on a Dask cluster: every attempt is one task pinned to one worker.

A provider is an ordinary ``dask worker`` with gflite installed and this module
preloaded, which declares the provider's price per CPU-second::

    GFLITE_PRICE=0.02 dask worker tls://scheduler:8786 --name alice \\
        --preload gflite.gwasm.executors.dask \\
        --tls-ca-file ca.pem --tls-cert node.pem --tls-key node-key.pem

Workers without the preload are not providers. The requestor side is
:class:`DaskExecutor`. A program reaches each worker once: one install task
per worker and sha256 carries the bytes to the worker's scratch directory,
and the attempts submitted meanwhile depend on it. On the worker, guests run
in the local executor's sandbox processes (one per worker thread, each with
the compiled-module cache), which kill a guest that overruns its time or
output limit, so a hung guest never wedges the worker.

Distributed is imported only when a :class:`DaskExecutor` is made, so that
a missing ``gflite[cluster]`` install is one clear ClusterError.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gflite import __version__
from gflite.errors import ClusterError, GfliteError
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.executors.local import LOAD_GRACE, LocalExecutor
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult

if TYPE_CHECKING:
    import distributed

CLUSTER_ENV = "GFLITE_CLUSTER"
PRICE_ENV = "GFLITE_PRICE"
TLS_ENV = ("GFLITE_TLS_CA", "GFLITE_TLS_CERT", "GFLITE_TLS_KEY")
# Key of the per-worker metadata the preload publishes in scheduler_info().
INFO_KEY = "gflite"
NOT_INSTALLED = "program not installed on provider"

# ---------------------------------------------------------------------------
# Provider side: the preload and the tasks a worker runs.
# ---------------------------------------------------------------------------


def declared_price(environ: dict[str, str] | None = None) -> float:
    """The price per CPU-second a provider declares in ``GFLITE_PRICE`` (default 0)."""
    raw = (os.environ if environ is None else environ).get(PRICE_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        price = float(raw)
    except ValueError:
        price = math.nan
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"{PRICE_ENV}={raw!r} is not a non-negative number")
    return price


def dask_setup(worker: Any) -> None:
    """Dask preload hook: mark this worker as a gflite provider and publish its price.

    Runs before the worker registers, so the scheduler sees the price from the start.
    """
    info = {"price": declared_price(), "version": __version__}
    worker.startup_information[INFO_KEY] = lambda _w: info


def dask_teardown(worker: Any) -> None:
    """Dask preload hook: stop this worker's sandbox processes and remove their files."""
    global _local
    with _lock:
        local, _local = _local, None
    if local is not None:
        local.close()


_lock = threading.Lock()
_programs: dict[str, Path] = {}
_installs = 0
_running = 0
_local: LocalExecutor | None = None


def _scratch() -> Path:
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except (ImportError, ValueError):
        base = Path(tempfile.gettempdir())
    d = base / "gflite-programs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _install(sha256: str, data: bytes) -> str:
    """Task: keep a program on this worker's disk; its result orders later attempts after it."""
    global _installs
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("program bytes do not match their sha256")
    path = _scratch() / f"{sha256}.wasm"
    if not path.exists():
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    with _lock:
        _programs[sha256] = path
        _installs += 1
    return sha256


def _sandboxes() -> LocalExecutor:
    """This worker's sandbox processes: the local executor, one process per worker thread.

    It kills a guest that overruns its time or output limit, so a hung guest
    costs one attempt, never the worker."""
    global _local
    with _lock:
        if _local is None:
            try:
                from distributed import get_worker

                threads = get_worker().state.nthreads
            except (ImportError, ValueError):
                threads = 1
            _local = LocalExecutor(workers=max(1, threads))
        return _local


def _worker_stats() -> dict[str, Any]:
    with _lock:
        spawned = _local.spawned if _local is not None else 0
        return {"installs": _installs, "programs": sorted(_programs), "sandboxes": spawned,
                "running": _running, "pid": os.getpid()}


def _attempt(sha256: str, subtask: Subtask, limits: Limits, provider: str,
             nan_canonicalization: bool = True) -> SubtaskResult:
    """Task: run one attempt in one of this worker's sandbox processes, with the
    requestor's program settings (they are part of the result's identity)."""
    global _running
    with _lock:
        path = _programs.get(sha256)
    if path is None or not path.exists():
        return SubtaskResult(subtask.index, subtask.name, ok=False, reason=NOT_INSTALLED,
                             provider=provider)
    program = Program(path, sha256, nan_canonicalization=nan_canonicalization)
    future = _sandboxes().submit(program, subtask, limits)
    wanted = _still_wanted()
    with _lock:
        _running += 1
    try:
        result = _wait(future, wanted, subtask, provider)
    finally:
        with _lock:
            _running -= 1
    return replace(result, provider=provider)


def _wait(future: cf.Future[SubtaskResult], wanted: Callable[[], bool], subtask: Subtask,
          provider: str) -> SubtaskResult:
    while True:
        try:
            return future.result(timeout=0.5)
        except cf.CancelledError:
            return SubtaskResult(subtask.index, subtask.name, ok=False, reason="cancelled",
                                 provider=provider)
        except cf.TimeoutError:
            # Dask cannot stop a running task; when the requestor has given up on
            # it (cancelled, verified already), kill the guest to free the slot.
            if not wanted():
                future.cancel()


def _still_wanted() -> Callable[[], bool]:
    """A check that the task running in this thread has not been released by the client."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError, KeyError):
        return lambda: True

    def check() -> bool:
        ts = worker.state.tasks.get(key)
        return ts is not None and ts.state not in ("cancelled", "released", "forgotten")

    return check


# ---------------------------------------------------------------------------
# Requestor side.
# ---------------------------------------------------------------------------


def security_from_files(ca: str | Path, cert: str | Path, key: str | Path) -> distributed.Security:
    """Mutual-TLS settings for a client: our CA, our certificate and its key."""
    from distributed import Security

    for label, p in (("CA", ca), ("certificate", cert), ("key", key)):
        if not Path(p).is_file():
            raise ClusterError(f"TLS {label} file not found: {p}")
    return Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                    require_encryption=True)


def _security_from_env() -> distributed.Security | None:
    values = [os.environ.get(name, "").strip() for name in TLS_ENV]
    if not any(values):
        return None
    if not all(values):
        raise ClusterError(f"set all of {', '.join(TLS_ENV)} or none")
    return security_from_files(*values)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


async def _probe(address: str, connection_args: dict, timeout: float) -> None:
    """Connect and ask the scheduler who it is, so bad addresses and TLS refusals
    surface here, as one error, instead of inside Client construction."""
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout, **connection_args)
    try:
        await comm.write({"op": "identity", "reply": True})
        reply = await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise OSError("the peer is not a Dask scheduler")


@dataclass(eq=False)
class _Attempt:
    future: cf.Future
    subtask: Subtask
    sha256: str
    provider: str
    deadline: float
    dask_future: Any = None
    settled: bool = False
    started: float = field(default_factory=time.monotonic)


def _blob(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError("not bytes")
    return bytes(value)


def _checked(attempt: _Attempt, r: Any) -> SubtaskResult:
    """A worker's answer as a result of our own making: its digest recomputed from the
    outputs (a provider cannot claim another result's digest), the outputs asked for,
    and no more CPU-seconds than the wall time we waited."""
    st, provider = attempt.subtask, attempt.provider

    def bad(what: str) -> SubtaskResult:
        return SubtaskResult(st.index, st.name, ok=False, provider=provider,
                             reason=f"provider {provider} returned {what}")

    if not isinstance(r, SubtaskResult):
        return bad("a malformed result")
    if r.index != st.index:
        return bad(f"the result of subtask {r.index}")
    try:
        outputs = tuple((rel, _blob(data)) for rel, data in r.outputs) if r.ok else ()
        if not all(isinstance(rel, str) for rel, _ in outputs):
            raise TypeError("output name not a string")
        # A single-threaded guest cannot use more CPU than the wall time we waited.
        seconds = min(float(r.seconds), time.monotonic() - attempt.started)
        out = SubtaskResult(
            st.index, st.name, ok=r.ok is True, outputs=outputs, reason=str(r.reason),
            exit_code=None if r.exit_code is None else int(r.exit_code),
            stdout=_blob(r.stdout), stderr=_blob(r.stderr), provider=provider,
            seconds=seconds if math.isfinite(seconds) and seconds > 0 else 0.0,
        )
    except (TypeError, ValueError):
        return bad("a malformed result")
    if out.ok and tuple(rel for rel, _ in outputs) != st.outputs:
        return bad("outputs other than the ones asked for")
    return out


class DaskExecutor(Executor):
    """Runs attempts on the workers of a Dask cluster, one pinned task per attempt.

    ``security`` is a ``distributed.Security``, a ``(ca, cert, key)`` tuple of
    paths, or None to use ``GFLITE_TLS_CA``/``GFLITE_TLS_CERT``/``GFLITE_TLS_KEY``
    if set, else Dask's own configuration; ``connect_timeout`` bounds reaching
    the scheduler. A provider that leaves fails its running attempts at once,
    one whose heartbeat stops for ``stale_after`` seconds (hung, stopped) soon
    after; as a last resort an attempt fails if it has no answer ``grace``
    seconds after its worst case (program load, queueing, subtask timeout).
    Work that no provider can take (all left, or all ran it already) waits
    ``rejoin_grace`` seconds for providers to join (a nanny restarts a killed
    worker in seconds) before it fails.
    """

    # One attempt queued behind each running one hides the round trip to the worker.
    prefetch = 1

    def __init__(
        self,
        address: str,
        security: distributed.Security | tuple[str | Path, str | Path, str | Path] | None = None,
        *,
        connect_timeout: float = 5.0,
        grace: float = 10.0,
        stale_after: float = 30.0,
        poll_interval: float = 0.5,
        rejoin_grace: float = 10.0,
    ) -> None:
        try:
            import distributed
            from distributed.comm import parse_address
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ClusterError(
                f"the cluster executor needs Dask: pip install 'gflite[cluster]' ({exc})"
            ) from None

        address = address.strip()
        if "://" not in address:
            address = f"tcp://{address}"
        try:
            scheme, _ = parse_address(address)
        except ValueError as exc:
            raise ClusterError(f"bad cluster address {address!r}: {_one_line(exc)}") from None
        if isinstance(security, tuple):
            security = security_from_files(*security)
        elif security is None:
            security = _security_from_env() or distributed.Security()
        if scheme == "tls" and not security.tls_client_cert:
            raise ClusterError(
                f"{address} uses TLS: give a CA, certificate and key ({', '.join(TLS_ENV)})")

        self.address = address
        self.grace = grace
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self.rejoin_grace = rejoin_grace
        try:
            asyncio.run(_probe(address, security.get_connection_args("client"), connect_timeout))
        except Exception as exc:
            why = _one_line(exc)
            if scheme == "tls" and ("SSL" in why or "TLS" in why):
                why = f"TLS handshake refused (certificate not signed by the cluster's CA?): {why}"
            raise ClusterError(f"cannot connect to cluster scheduler {address}: {why}") from None
        try:
            self._client = distributed.Client(
                address, security=security, timeout=connect_timeout, set_as_default=False)
        except Exception as exc:
            raise ClusterError(
                f"cannot connect to cluster scheduler {address}: {_one_line(exc)}") from None

        self._lock = threading.Lock()
        self._attempts: set[_Attempt] = set()
        self._installs: dict[tuple[str, str], Any] = {}  # (worker, sha) -> dask Future | True
        self._blobs: dict[str, bytes] = {}
        self._workers: dict[str, dict[str, Any]] = {}
        self._refreshed = -math.inf
        self._heartbeats: dict[str, tuple[float, float]] = {}  # addr -> (last_seen, noticed at)
        self._closed = threading.Event()
        self._broken = ""
        self._collector = cf.ThreadPoolExecutor(4, thread_name_prefix="gflite-dask-collect")
        try:
            self._refresh()
        except Exception as exc:
            self._client.close(timeout=2)
            raise ClusterError(
                f"cluster scheduler {address} did not list its workers: {_one_line(exc)}"
            ) from None
        self._watchdog = threading.Thread(target=self._watch, name="gflite-dask-watchdog",
                                          daemon=True)
        self._watchdog.start()

    @classmethod
    def from_env(cls, address: str | None = None, **kwargs: Any) -> DaskExecutor:
        """Executor for ``address`` or ``$GFLITE_CLUSTER``."""
        address = address or os.environ.get(CLUSTER_ENV, "")
        if not address:
            raise ClusterError(f"no cluster address (give --cluster or set {CLUSTER_ENV})")
        return cls(address, **kwargs)

    # -- cluster view -------------------------------------------------------

    def _refresh(self) -> dict[str, dict[str, Any]]:
        """Fetch the worker list; remember it and each worker's heartbeat progress."""
        try:
            workers = dict(self._client.scheduler_info(n_workers=-1)["workers"])
        except Exception as exc:  # disconnected: no or a stale answer
            raise ClusterError(
                f"lost the cluster scheduler {self.address}: {_one_line(exc)}") from None
        now = time.monotonic()
        with self._lock:
            self._workers = workers
            self._refreshed = now
            beats = {}
            for addr, w in workers.items():
                seen = w.get("last_seen", 0.0)
                old = self._heartbeats.get(addr)
                beats[addr] = old if old and old[0] == seen else (seen, now)
            self._heartbeats = beats
        return workers

    @staticmethod
    def _price_of(w: dict[str, Any]) -> float | None:
        info = w.get(INFO_KEY)
        if not isinstance(info, dict):
            return None
        price = info.get("price")
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            return None
        return float(price) if math.isfinite(price) and price >= 0 else None

    def providers(self) -> tuple[Provider, ...]:
        """Running workers that preloaded gflite, by address, with their declared price.

        Asks the scheduler at most once per ``poll_interval``."""
        self._check_usable()
        with self._lock:
            workers = self._workers
            fresh = time.monotonic() - self._refreshed < self.poll_interval
        if not fresh:
            workers = self._refresh()
        out = []
        for addr, w in workers.items():
            price = self._price_of(w)
            if price is not None and w.get("status", "running") == "running" \
                    and not self._stale(addr):
                out.append(Provider(id=addr, price=price, slots=max(1, int(w.get("nthreads", 1))),
                                    name=str(w.get("name", addr))))
        return tuple(sorted(out, key=lambda p: p.id))

    def _stale(self, addr: str, now: float | None = None) -> float:
        """Seconds since ``addr``'s heartbeat last moved, if over ``stale_after``, else 0."""
        beat = self._heartbeats.get(addr)
        if beat is None:
            return 0.0
        quiet = (time.monotonic() if now is None else now) - beat[1]
        return quiet if quiet > self.stale_after else 0.0

    def slots(self) -> dict[str, int]:
        """How many attempts each provider runs at once (its worker's threads)."""
        with self._lock:
            return {a: int(w.get("nthreads", 1)) for a, w in self._workers.items()
                    if self._price_of(w) is not None}

    def names(self) -> dict[str, str]:
        """Each provider's worker name (``dask worker --name``), for reports."""
        with self._lock:
            return {a: str(w.get("name", a)) for a, w in self._workers.items()}

    def wait_for_providers(self, n: int, timeout: float) -> tuple[Provider, ...]:
        """Block until at least ``n`` providers joined; ClusterError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.providers()
            if len(found) >= n:
                return found
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"only {len(found)} of {n} gflite providers joined {self.address} within "
                    f"{timeout:g} s (workers need --preload gflite.gwasm.executors.dask)")
            time.sleep(min(0.2, self.poll_interval))

    def worker_stats(self, workers: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per-worker diagnostics: install tasks run, programs held, sandbox processes
        started, pid. Blocks on a hung worker: for tests and troubleshooting only."""
        self._check_usable()
        return self._client.run(_worker_stats, workers=workers)

    # -- attempts -----------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed.is_set():
            raise ClusterError("the cluster executor is closed")
        if self._broken:
            raise ClusterError(self._broken)
        if self._client.status in ("closing", "closed"):
            raise ClusterError(f"lost the cluster scheduler {self.address}")

    def _pick(self) -> str:
        providers = self.providers()
        if not providers:
            raise ClusterError(f"no gflite providers on {self.address}")
        with self._lock:
            load = {p.id: 0 for p in providers}
            for a in self._attempts:
                if a.provider in load:
                    load[a.provider] += 1
        return min(load, key=lambda addr: (load[addr], addr))

    def _program_bytes(self, program: Program) -> bytes:
        data = self._blobs.get(program.sha256)
        if data is None:
            try:
                data = Path(program.path).read_bytes()
            except OSError as exc:
                raise GfliteError(f"cannot read {program.path}: {exc.strerror or exc}") from None
            if hashlib.sha256(data).hexdigest() != program.sha256:
                raise GfliteError(f"{program.path} changed since its sha256 was taken")
            self._blobs[program.sha256] = data
        return data

    def _installed(self, program: Program, provider: str) -> Any:
        """The argument that names the program in an attempt: its sha256 once the worker
        has it, else the pending install task, which orders the attempt after it."""
        import dask

        key = (provider, program.sha256)
        state = self._installs.get(key)
        if state is True:
            return program.sha256
        if state is not None:
            return state
        data = self._program_bytes(program)
        # The program travels once per worker, inside this task; the warning about
        # large graphs is about repeated data, which this is not.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GiB"}):
            fut = self._client.submit(
                _install, program.sha256, data,
                key=f"gflite-install-{program.sha256[:16]}-{uuid.uuid4().hex[:8]}",
                workers=[provider], allow_other_workers=False, pure=False, retries=0)
        self._installs[key] = fut

        def installed(f: Any) -> None:
            with self._lock:
                if self._installs.get(key) is f:
                    if f.status == "finished":
                        self._installs[key] = True
                    else:
                        del self._installs[key]

        fut.add_done_callback(installed)
        return fut

    def submit(
        self,
        program: Program,
        subtask: Subtask,
        limits: Limits,
        provider: str | None = None,
    ) -> cf.Future[SubtaskResult]:
        self._check_usable()
        if provider is None:
            provider = self._pick()
        future: cf.Future[SubtaskResult] = cf.Future()
        with self._lock:
            known = provider in self._workers
            threads = max(1, int(self._workers.get(provider, {}).get("nthreads", 1)))
            queued = sum(1 for a in self._attempts if a.provider == provider)
        if not known:
            future.set_result(self._failure(subtask, provider, f"provider {provider} left"))
            return future
        # A pinned task can wait behind others on its worker: allow one worst case
        # (program load and subtask timeout) per round of queued attempts.
        rounds = queued // threads + 1
        patience = rounds * (LOAD_GRACE + limits.subtask_timeout) + self.grace
        attempt = _Attempt(future, subtask, program.sha256, provider,
                           deadline=time.monotonic() + patience)
        try:
            with self._lock:
                program_arg = self._installed(program, provider)
            attempt.dask_future = self._client.submit(
                _attempt, program_arg, subtask, limits, provider, program.nan_canonicalization,
                key=f"gflite-{subtask.index}-{uuid.uuid4().hex[:12]}",
                workers=[provider], allow_other_workers=False, pure=False, retries=0)
        except GfliteError:
            raise
        except Exception as exc:
            future.set_result(self._failure(subtask, provider,
                                            f"cannot submit to the cluster: {_one_line(exc)}"))
            return future
        with self._lock:
            self._attempts.add(attempt)
        attempt.dask_future.add_done_callback(lambda f: self._finished(attempt, f))
        future.add_done_callback(lambda f: self._caller_cancelled(attempt, f))
        return future

    @staticmethod
    def _failure(subtask: Subtask, provider: str, reason: str) -> SubtaskResult:
        return SubtaskResult(subtask.index, subtask.name, ok=False, reason=reason,
                             provider=provider)

    def _caller_cancelled(self, attempt: _Attempt, f: cf.Future) -> None:
        if f.cancelled():
            self._settle(attempt, None)

    def _finished(self, attempt: _Attempt, f: Any) -> None:
        # Dask runs done-callbacks one at a time on one thread; fetching a result
        # can block (a provider dying just then), so it happens elsewhere.
        if attempt.settled or self._closed.is_set():
            return
        try:
            self._collector.submit(self._collect, attempt, f)
        except RuntimeError:  # closed meanwhile
            pass

    def _collect(self, attempt: _Attempt, f: Any) -> None:
        """Turn a finished task into a result this side checked (never trust a worker)."""
        if attempt.settled:
            return
        try:
            if f.status == "finished":
                result = _checked(attempt, f.result(timeout=self.grace))
            elif f.status == "cancelled":
                why = ("attempt cancelled by the cluster" if self._client.status == "running"
                       else f"lost the cluster scheduler {self.address}")
                result = self._failure(attempt.subtask, attempt.provider, why)
            else:
                exc = f.exception(timeout=5)
                result = self._failure(attempt.subtask, attempt.provider,
                                       f"provider {attempt.provider} raised "
                                       f"{type(exc).__name__}: {_one_line(exc)}")
        except Exception as exc:
            result = self._failure(attempt.subtask, attempt.provider,
                                   f"cannot fetch the result from {attempt.provider}: "
                                   f"{_one_line(exc)}")
        if result.reason == NOT_INSTALLED:
            with self._lock:
                if self._installs.get((attempt.provider, attempt.sha256)) is True:
                    del self._installs[(attempt.provider, attempt.sha256)]
        self._settle(attempt, result)

    def _settle(self, attempt: _Attempt, result: SubtaskResult | None) -> None:
        """Resolve an attempt exactly once, whoever gets there first."""
        with self._lock:
            if attempt.settled:
                return
            attempt.settled = True
            self._attempts.discard(attempt)
        dask_future, attempt.dask_future = attempt.dask_future, None
        if dask_future is not None:
            try:
                dask_future.release()
            except Exception:
                pass
        if result is not None and not attempt.future.done():
            try:
                attempt.future.set_result(result)
            except cf.InvalidStateError:  # cancelled by the caller meanwhile
                pass

    def _watch(self) -> None:
        """Fail attempts whose provider left, stopped heartbeating, or overran."""
        failed_since: float | None = None
        while not self._closed.wait(self.poll_interval):
            with self._lock:
                pending = list(self._attempts)
            if not pending:
                continue
            try:
                workers = self._refresh()
                failed_since = None
            except Exception as exc:
                failed_since = failed_since or time.monotonic()
                if time.monotonic() - failed_since > self.stale_after:
                    self._broken = f"lost the cluster scheduler {self.address}: {_one_line(exc)}"
                    for a in pending:
                        self._settle(a, self._failure(a.subtask, a.provider, self._broken))
                continue
            now = time.monotonic()
            for a in pending:
                quiet = self._stale(a.provider, now)
                if a.provider not in workers:
                    reason = f"provider {a.provider} left"
                elif quiet:
                    reason = (f"provider {a.provider} stopped responding "
                              f"(no heartbeat for {quiet:.0f} s)")
                elif now > a.deadline:
                    reason = (f"provider {a.provider} did not answer within "
                              f"{a.deadline - a.started:.0f} s")
                else:
                    continue
                self._settle(a, self._failure(a.subtask, a.provider, reason))

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            pending = list(self._attempts)
            installs = [f for f in self._installs.values() if f is not True]
            self._installs.clear()
        for a in pending:
            self._settle(a, self._failure(a.subtask, a.provider, "executor closed"))
        for f in installs:
            try:
                f.release()
            except Exception:
                pass
        self._collector.shutdown(wait=False, cancel_futures=True)
        try:
            self._client.close(timeout=2)
        except Exception:
            pass

