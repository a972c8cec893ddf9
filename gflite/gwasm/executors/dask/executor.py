"""The requestor's side of a Dask cluster: every attempt is one task pinned to one worker.

The requestor runs the scheduler (hardened by ``--preload
gflite.gwasm.executors.dask.scheduler``); providers are ``dask worker``
processes hardened by ``--preload gflite.gwasm.executors.dask.provider``, which
declare a price per CPU-second. Workers without that preload are not
providers. A program reaches each worker once: one install task per worker
and sha256 carries the bytes, and the attempts submitted meanwhile depend on
it. An attempt's arguments and its answer are plain msgpack blobs
(:mod:`.messages`).

Answers are data. Making an executor hardens this process's Dask client
(:mod:`.requestor`). An answer larger than the limits allow is refused by its
size as the scheduler reports it, before it is fetched. A provider whose answer is
refused (malformed, too large, an error object) is excluded for as long as
this executor lives.

Distributed is imported only when a :class:`DaskExecutor` is made, so that
a missing ``gflite[cluster]`` install is one clear ClusterError.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gflite.errors import ClusterError, GfliteError
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.executors.dask import messages, requestor, tasks
from gflite.gwasm.executors.dask.requestor import MessageTooLarge
from gflite.gwasm.executors.local import LOAD_GRACE
from gflite.gwasm.spool import Spool
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

if TYPE_CHECKING:
    import distributed

CLUSTER_ENV = "GFLITE_CLUSTER"
TLS_ENV = ("GFLITE_TLS_CA", "GFLITE_TLS_CERT", "GFLITE_TLS_KEY")
NAME_CAP = 200  # a provider's name as it claims it; escaped later, before any terminal


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
    limits: Limits
    sha256: str
    provider: str
    deadline: float
    dask_future: Any = None
    settled: bool = False
    started: float = field(default_factory=time.monotonic)


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
        files: bool = False,
    ) -> None:
        try:
            import distributed
            from distributed.comm import parse_address
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ClusterError(
                f"the cluster executor needs Dask: pip install 'gflite[cluster]' ({exc})"
            ) from None
        requestor.harden()

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
        # files: each accepted answer's outputs go to this spool as they arrive,
        # so the dispatcher and the writer hold a path, not the audio.
        self._spool = Spool() if files else None
        try:
            asyncio.run(_probe(address, security.get_connection_args("client"), connect_timeout))
        except Exception as exc:
            why = _one_line(exc)
            if scheme == "tls" and ("SSL" in why or "TLS" in why):
                why = f"TLS handshake refused (certificate not signed by the cluster's CA?): {why}"
            raise ClusterError(f"cannot connect to cluster scheduler {address}: {why}") from None
        try:
            # Answers come straight from the provider (the requestor runs the
            # scheduler, so it reaches the workers): the scheduler never holds one,
            # and only this side, which knows the limits, reads it (capped).
            self._client = distributed.Client(
                address, security=security, timeout=connect_timeout, set_as_default=False,
                direct_to_workers=True)
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
        self._refused: dict[str, str] = {}  # provider -> why its answers are no longer taken
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
        info = w.get(messages.INFO_KEY)
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
                    and not self._stale(addr) and addr not in self._refused:
                info = w.get(messages.INFO_KEY)
                caps = messages.parse_caps(info.get("caps") if isinstance(info, dict) else None)
                if caps is not None:
                    out.append(Provider(id=addr, price=price, slots=self._threads(w),
                                        name=self._name(addr, w), operator=self._operator(addr, w),
                                        caps=caps))
        return tuple(sorted(out, key=lambda p: p.id))

    @staticmethod
    def _threads(w: dict[str, Any]) -> int:
        n = w.get("nthreads", 1)
        return n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 4096 else 1

    @staticmethod
    def _name(addr: str, w: dict[str, Any]) -> str:
        return str(w.get("name", addr))[:NAME_CAP]

    @staticmethod
    def _operator(addr: str, w: dict[str, Any]) -> str:
        """Who answers for a provider: the identity of its TLS certificate as our
        scheduler saw it when the worker registered, else the worker's host."""
        info = w.get(messages.INFO_KEY)
        ident = info.get("operator") if isinstance(info, dict) else None
        if isinstance(ident, str) and ident and addr.startswith("tls://"):
            return ident[:NAME_CAP]
        return addr.split("://")[-1].rsplit(":", 1)[0]

    def excluded(self) -> dict[str, str]:
        """Providers this executor stopped offering work to, and why."""
        with self._lock:
            return dict(self._refused)

    def _stale(self, addr: str, now: float | None = None) -> float:
        """Seconds since ``addr``'s heartbeat last moved, if over ``stale_after``, else 0."""
        beat = self._heartbeats.get(addr)
        if beat is None:
            return 0.0
        quiet = (time.monotonic() if now is None else now) - beat[1]
        return quiet if quiet > self.stale_after else 0.0


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
                    f"{timeout:g} s (workers need --preload gflite.gwasm.executors.dask.provider)")
            time.sleep(min(0.2, self.poll_interval))

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
                tasks.install, program.sha256, data,
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
            threads = self._threads(self._workers.get(provider, {}))
            queued = sum(1 for a in self._attempts if a.provider == provider)
            refused = self._refused.get(provider)
        if not known or refused:
            why = f"provider {provider} was excluded: {refused}" if refused \
                else f"provider {provider} left"
            future.set_result(self._failure(subtask, provider, why, Failure.LOST))
            return future
        # A pinned task can wait behind others on its worker: allow one worst case
        # (program load and subtask timeout) per round of queued attempts.
        rounds = queued // threads + 1
        patience = rounds * (LOAD_GRACE + limits.subtask_timeout) + self.grace
        attempt = _Attempt(future, subtask, limits, program.sha256, provider,
                           deadline=time.monotonic() + patience)
        requestor.raise_read_cap(self, limits)
        try:
            with self._lock:
                program_arg = self._installed(program, provider)
            attempt.dask_future = self._client.submit(
                tasks.attempt, program_arg,
                messages.encode_request(subtask, limits, program.nan_canonicalization),
                key=f"gflite-{subtask.index}-{uuid.uuid4().hex[:12]}",
                workers=[provider], allow_other_workers=False, pure=False, retries=0)
        except GfliteError:
            raise
        except Exception as exc:
            future.set_result(self._failure(subtask, provider,
                                            f"cannot submit to the cluster: {_one_line(exc)}",
                                            Failure.LOST))
            return future
        with self._lock:
            self._attempts.add(attempt)
        attempt.dask_future.add_done_callback(lambda f: self._finished(attempt, f))
        future.add_done_callback(lambda f: self._caller_cancelled(attempt, f))
        return future

    @staticmethod
    def _failure(subtask: Subtask, provider: str, reason: str, failure: Failure) -> SubtaskResult:
        return SubtaskResult.failed(subtask, reason, failure, provider=provider)

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
        st, provider = attempt.subtask, attempt.provider
        try:
            if f.status == "finished":
                result = self._answer(attempt, f)
            elif f.status == "cancelled":
                why = ("attempt cancelled by the cluster" if self._client.status == "running"
                       else f"lost the cluster scheduler {self.address}")
                result = self._failure(st, provider, why, Failure.LOST)
            elif provider not in self._workers:
                result = self._failure(st, provider, f"provider {provider} left", Failure.LOST)
            else:
                # Our entry point never raises: an error object is not an answer.
                result = self._malformed(attempt, "an error instead of an answer")
        except MessageTooLarge as exc:
            result = self._malformed(attempt, str(exc))
        except Exception as exc:
            if requestor.sent_too_much(provider):
                result = self._malformed(attempt, f"a message over the requestor's cap of "
                                                  f"{requestor.read_cap()} bytes")
            elif isinstance(exc, (OSError, TimeoutError, cf.TimeoutError, asyncio.TimeoutError)) \
                    or provider not in self._workers:
                result = self._failure(st, provider, f"cannot fetch the result from {provider}: "
                                       f"{_one_line(exc)}", Failure.LOST)
            else:  # Dask could not load what the provider sent
                result = self._malformed(attempt, f"an answer that cannot be loaded "
                                                  f"({type(exc).__name__})")
        if result.reason == messages.NOT_INSTALLED:
            with self._lock:
                if self._installs.get((provider, attempt.sha256)) is True:
                    del self._installs[(provider, attempt.sha256)]
        self._settle(attempt, result)

    def _answer(self, attempt: _Attempt, f: Any) -> SubtaskResult:
        """Fetch and decode an answer, refusing one larger than the limits allow by the
        size the scheduler reports before any of it is fetched."""
        cap = messages.answer_cap(attempt.limits)
        size = self._client.nbytes(keys=[f.key], summary=False).get(f.key)
        if not isinstance(size, int) or size > cap:
            return self._malformed(attempt, f"an answer of {size} bytes (the limits allow {cap})")
        blob = f.result(timeout=self.grace)
        try:
            result = messages.decode_answer(blob, attempt.subtask, attempt.limits,
                                            attempt.provider, time.monotonic() - attempt.started)
        except messages.Malformed as exc:
            return self._malformed(attempt, str(exc))
        del blob
        if self._spool is None or not result.ok:
            return result
        # The sha256 is this machine's, taken as the bytes are written: the
        # dispatcher still checks the provider against what it sent.
        return replace(result, outputs=tuple((rel, self._spool.adopt_bytes(rel, data))
                                             for rel, data in result.outputs))

    def _malformed(self, attempt: _Attempt, what: str) -> SubtaskResult:
        """Refuse an answer and exclude its provider from all further work."""
        reason = f"provider {attempt.provider} returned {what}"
        with self._lock:
            self._refused.setdefault(attempt.provider, reason)
        return self._failure(attempt.subtask, attempt.provider, reason, Failure.MALFORMED)

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
                        self._settle(a, self._failure(a.subtask, a.provider, self._broken,
                                                      Failure.LOST))
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
                self._settle(a, self._failure(a.subtask, a.provider, reason, Failure.LOST))

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            pending = list(self._attempts)
            installs = [f for f in self._installs.values() if f is not True]
            self._installs.clear()
        for a in pending:
            self._settle(a, self._failure(a.subtask, a.provider, "executor closed",
                                          Failure.CANCELLED))
        for f in installs:
            try:
                f.release()
            except Exception:
                pass
        requestor.release_read_cap(self)
        self._collector.shutdown(wait=False, cancel_futures=True)
        if self._spool is not None:
            self._spool.close()
        try:
            self._client.close(timeout=2)
        except Exception:
            pass

