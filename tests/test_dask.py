"""The Dask executor against real, hardened ``dask scheduler``/``dask worker`` processes on
127.0.0.1 (honest behaviour; attacks are in test_dask_attacks.py)."""
from __future__ import annotations

import concurrent.futures as cf
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from cluster import ECHO_WAT, Cluster, echo_subtask, make_program, make_tls
from gflite.errors import ClusterError, MarketError
from gflite.gwasm import sandbox
from gflite.gwasm.executors import dask as dask_executor
from gflite.gwasm.executors.dask import DaskExecutor, messages
from gflite.gwasm.market import Ledger, Market
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult
from gflite.gwasm.verify import Quorum

SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
# Sleeps an hour inside the host (poll_oneoff on the monotonic clock).
SLEEP_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 144) (i32.const 1))
    (i64.store (i32.const 152) (i64.const 3600000000000))
    (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 300)))))
"""
LIMITS = Limits(subtask_timeout=60.0)


def oracle(program: Program, subtask: Subtask) -> SubtaskResult:
    """What the engine produces for the subtask in this process."""
    r = sandbox.run_subtask(program, subtask, LIMITS)
    assert r.ok, r.reason
    return r


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GFLITE_CLUSTER", "GFLITE_PRICE", *dask_executor.TLS_ENV):
        monkeypatch.delenv(name, raising=False)


# --- without a cluster -------------------------------------------------------


def test_no_module_imports_dask_until_a_cluster_is_used() -> None:
    code = (
        "import importlib, pkgutil, sys, gflite\n"
        "for m in pkgutil.walk_packages(gflite.__path__, 'gflite.'):\n"
        "    if m.name.endswith(('.dask.provider', '.dask.scheduler')):\n"
        "        continue  # preloads: they run inside Dask processes and harden them\n"
        "    importlib.import_module(m.name)\n"
        "assert 'gflite.gwasm.executors.dask.tasks' in sys.modules\n"
        "bad = [m for m in sys.modules if m in ('dask', 'distributed', 'msgpack')"
        " or m.startswith(('dask.', 'distributed.'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_price_declaration() -> None:
    assert messages.declared_price({}) == 0.0
    assert messages.declared_price({"GFLITE_PRICE": " 0.25 "}) == 0.25
    for bad in ("-1", "free", "nan", "inf"):
        with pytest.raises(ValueError, match="GFLITE_PRICE"):
            messages.declared_price({"GFLITE_PRICE": bad})


def test_unreachable_scheduler_is_one_clear_error_quickly() -> None:
    start = time.monotonic()
    with pytest.raises(ClusterError) as err:
        DaskExecutor("tcp://127.0.0.1:1", connect_timeout=0.5)
    assert time.monotonic() - start < 5
    assert "cannot connect to cluster scheduler tcp://127.0.0.1:1" in str(err.value)
    assert "\n" not in str(err.value) and err.value.__suppress_context__
    assert err.value.exit_code == 8
    with pytest.raises(ClusterError, match="unknown address scheme"):
        DaskExecutor("bogus://127.0.0.1:1")
    with pytest.raises(ClusterError, match="GFLITE_CLUSTER"):
        DaskExecutor.from_env()


# --- one shared cluster: two honest providers and a liar ----------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    # TLS with a certificate per provider: three operators (on plain tcp the
    # three would be one, their host).
    base = tmp_path_factory.mktemp("cluster")
    with Cluster(base / "cluster", tls=make_tls(base / "tls")) as c:
        c.add_worker("alice", price=0.02, nanny=True)
        c.add_worker("bob", price=0.05)
        c.add_worker("mallory", price=0.01, faulty="mallory")
        c.wait()
        yield c


@pytest.fixture(scope="module")
def executor(cluster: Cluster):
    tls = cluster.tls
    with DaskExecutor(cluster.address, (tls.ca, tls.cert, tls.key), stale_after=10) as ex:
        ex.wait_for_providers(3, timeout=60)
        yield ex


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return make_program(tmp_path_factory.mktemp("wasm"), ECHO_WAT)


@pytest.mark.slow
def test_providers_are_workers_with_their_declared_prices(cluster: Cluster, executor) -> None:
    providers = {p.id: p for p in executor.providers()}
    w = cluster.workers
    assert {a: p.price for a, p in providers.items()} == {
        w["alice"].address: 0.02, w["bob"].address: 0.05, w["mallory"].address: 0.01}
    assert providers[w["bob"].address].name == "bob"
    assert {p.slots for p in providers.values()} == {1}
    # Under TLS a provider's operator is its certificate's identity (one each here).
    assert {p.operator for p in providers.values()} == {
        f"{n}/gflite-provider" for n in ("alice", "bob", "mallory")}


@pytest.mark.slow
def test_pinned_attempts_run_on_that_worker_with_the_engines_output(
        cluster: Cluster, executor, echo: Program) -> None:
    for name in ("alice", "bob"):
        addr = cluster.workers[name].address
        subtasks = [echo_subtask(i, name, f"word{i}") for i in range(4)]
        futures = [executor.submit(echo, st, LIMITS, provider=addr) for st in subtasks]
        for st, f in zip(subtasks, futures):
            r = f.result(timeout=60)
            assert r.ok, r.reason
            assert r.provider == addr and r.index == st.index
            assert r.outputs == (("out.txt", f"{name}\0word{st.index}\0".encode()),)
            assert r.digest == oracle(echo, st).digest
            assert r.seconds >= 0


@pytest.mark.slow
def test_the_programs_settings_reach_the_worker(cluster: Cluster, executor, wat_program) -> None:
    # nan.wat writes a NaN's bits: with canonicalisation off, x86 keeps its payload.
    canonical = wat_program("nan")
    native = replace(canonical, nan_canonicalization=False)
    st = Subtask(0, "nan", (), (), ("out.bin",))
    bob = cluster.workers["bob"].address
    got = {}
    for program in (canonical, native):
        r = executor.submit(program, st, LIMITS, provider=bob).result(timeout=60)
        assert r.ok, r.reason
        assert r.outputs == sandbox.run_subtask(program, st, LIMITS).outputs
        got[program.nan_canonicalization] = r.outputs
    assert got[True] != got[False]


def installs(cluster: Cluster, name: str, sha256: str) -> int:
    """How many times a worker's log says it installed the program."""
    return cluster.workers[name].log.read_text().count(f"installed program {sha256}")


@pytest.mark.slow
def test_program_reaches_each_worker_once(cluster: Cluster, executor, tmp_path: Path) -> None:
    program = make_program(tmp_path, ECHO_WAT, nonce=uuid.uuid4().hex[:5])
    used = [cluster.workers[n].address for n in ("alice", "bob")]
    # A first wave submitted at once (it waits for the install) and a second after it.
    first = [executor.submit(program, echo_subtask(i, str(i)), LIMITS, provider=used[i % 2])
             for i in range(8)]
    assert all(f.result(timeout=60).ok for f in first)
    second = [executor.submit(program, echo_subtask(i, str(i)), LIMITS, provider=used[i % 2])
              for i in range(8, 12)]
    assert all(f.result(timeout=60).ok for f in second)
    assert installs(cluster, "alice", program.sha256) == 1
    assert installs(cluster, "bob", program.sha256) == 1
    assert installs(cluster, "mallory", program.sha256) == 0


@pytest.mark.slow
def test_hung_guests_are_killed_and_the_worker_keeps_working(
        cluster: Cluster, executor, echo: Program, tmp_path: Path) -> None:
    bob = cluster.workers["bob"].address
    for wat in (SPIN_WAT, SLEEP_WAT):
        start = time.monotonic()
        r = executor.submit(make_program(tmp_path, wat), echo_subtask(0),
                            Limits(subtask_timeout=1.0), provider=bob).result(timeout=60)
        assert not r.ok and r.reason.startswith("timeout"), r.reason
        assert time.monotonic() - start < 20
    r = executor.submit(echo, echo_subtask(1, "still", "here"), LIMITS, provider=bob).result(60)
    assert r.ok and r.outputs[0][1] == b"still\0here\0"


@pytest.mark.slow
def test_a_provider_that_is_not_there_fails_the_attempt(executor, echo: Program) -> None:
    r = executor.submit(echo, echo_subtask(0), LIMITS, provider="tcp://127.0.0.1:9").result(10)
    assert not r.ok and r.reason == "provider tcp://127.0.0.1:9 left"
    assert r.failure is Failure.LOST


def run_verified(ex: DaskExecutor, program: Program, subtask: Subtask, k: int, market: Market,
                 ledger: Ledger, excluded: set[str]) -> Quorum:
    """How the layer above combines executor, market and quorum for one subtask."""
    quorum = Quorum(k)
    running: dict[cf.Future, object] = {}
    while not quorum.done:
        for provider in quorum.pick(p.id for p in market.eligible(ex.providers(), excluded)):
            running[ex.submit(program, subtask, LIMITS, provider=provider)] = ledger.reserve(
                provider, subtask)
        if not running:
            quorum.abandon("no unused provider left")
            break
        done, _ = cf.wait(running, timeout=60, return_when=cf.FIRST_COMPLETED)
        assert done, "no replica finished"
        for f in done:
            result = f.result()
            ledger.settle(running.pop(f), result)
            quorum.add(result)
    for loser in quorum.losers:
        excluded.add(loser)
        ledger.reject(loser)
    return quorum


@pytest.mark.slow
def test_a_lying_provider_is_outvoted_named_excluded_and_unpaid(
        cluster: Cluster, executor, echo: Program) -> None:
    market = Market(bid=0.05)
    providers = market.check(executor.providers(), redundancy=2)
    liar = cluster.workers["mallory"].address
    assert providers[0].id == liar  # the cheapest, so it gets work first
    ledger = Ledger(market, providers, first_estimate=1.0)
    excluded: set[str] = set()

    first = echo_subtask(0, "verify", "me")
    q = run_verified(executor, echo, first, 2, market, ledger, excluded)
    assert q.winner is not None and q.winner.digest == oracle(echo, first).digest
    assert q.losers == frozenset({liar}) and excluded == {liar}
    assert liar in q.report() and len(q.used) == 3

    second = echo_subtask(1, "and", "me")
    q2 = run_verified(executor, echo, second, 2, market, ledger, excluded)
    assert q2.winner is not None and q2.winner.digest == oracle(echo, second).digest
    assert liar not in q2.used and q2.losers == frozenset()

    bill = {c.provider: c for c in ledger.bill().providers}
    assert bill[liar].rejected and bill[liar].cost == 0.0
    honest = [c for c in bill.values() if not c.rejected]
    assert {c.provider for c in honest} == {cluster.workers[n].address for n in ("alice", "bob")}
    assert ledger.bill().total == pytest.approx(sum(c.price * c.seconds for c in honest))


@pytest.mark.slow
def test_too_few_providers_under_the_bid(executor) -> None:
    with pytest.raises(MarketError, match="only 2 of 3 providers"):
        Market(bid=0.02).check(executor.providers(), redundancy=3)


# --- providers that die or hang -------------------------------------------------


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory):
    with Cluster(tmp_path_factory.mktemp("fragile")) as c:
        for name in ("doomed", "frozen", "spare"):
            c.add_worker(name)
        c.add_worker("nannied", nanny=True)
        c.wait()
        with DaskExecutor(c.address, stale_after=3) as ex:
            ex.wait_for_providers(4, timeout=60)
            yield c, ex


@pytest.mark.slow
def test_without_tls_a_providers_operator_is_its_host(fragile) -> None:
    """Plain tcp proves nothing about who runs a worker: every provider on one
    host is one operator, so redundancy cannot be bought with more processes."""
    _, ex = fragile
    assert {p.operator for p in ex.providers()} == {"127.0.0.1"}


def spin_until_running(ex: DaskExecutor, c: Cluster, name: str, tmp_path: Path) -> cf.Future:
    """Start a long attempt on worker ``name`` and wait until its guest runs there."""
    f = ex.submit(make_program(tmp_path, SPIN_WAT), echo_subtask(0), Limits(subtask_timeout=300),
                  provider=c.workers[name].address)
    wait_until(lambda: c.running(name))
    time.sleep(0.2)
    assert not f.done()
    return f


@pytest.mark.slow
def test_killed_provider_fails_its_attempt_and_the_work_finishes_elsewhere(
        fragile, echo: Program, tmp_path: Path) -> None:
    c, ex = fragile
    doomed = c.workers["doomed"].address
    f = spin_until_running(ex, c, "doomed", tmp_path)
    start = time.monotonic()
    c.signal("doomed", signal.SIGKILL)
    r = f.result(timeout=30)
    assert time.monotonic() - start < 10
    assert not r.ok and r.reason == f"provider {doomed} left" and r.failure is Failure.LOST
    assert doomed not in {p.id for p in ex.providers()}
    st = echo_subtask(3, "survived")
    again = ex.submit(echo, st, LIMITS, provider=c.workers["spare"].address).result(60)
    assert again.ok and again.outputs == oracle(echo, st).outputs


@pytest.mark.slow
def test_a_worker_process_killed_under_its_nanny(fragile, tmp_path: Path) -> None:
    c, ex = fragile
    addr = c.workers["nannied"].address
    f = spin_until_running(ex, c, "nannied", tmp_path)
    start = time.monotonic()
    pids = re.findall(r"gflite provider: hardened, pid (\d+)", c.workers["nannied"].log.read_text())
    os.kill(int(pids[-1]), signal.SIGKILL)
    r = f.result(timeout=30)
    assert time.monotonic() - start < 10
    assert not r.ok and r.reason == f"provider {addr} left"
    # The nanny starts a fresh worker, which is a new provider with a new address.
    wait_until(lambda: any(p.id not in {w.address for w in c.workers.values()}
                           for p in ex.providers()), timeout=60)


@pytest.mark.slow
def test_a_stopped_provider_fails_its_attempt_after_stale_after(fragile, tmp_path: Path) -> None:
    c, ex = fragile
    addr = c.workers["frozen"].address
    f = spin_until_running(ex, c, "frozen", tmp_path)
    start = time.monotonic()
    c.signal("frozen", signal.SIGSTOP)
    try:
        r = f.result(timeout=30)
    finally:
        c.signal("frozen", signal.SIGCONT)
    assert 2.5 < time.monotonic() - start < 10
    assert not r.ok and r.reason.startswith(f"provider {addr} stopped responding")


# --- mutual TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("tls")
    good = make_tls(base / "good")
    with Cluster(base / "cluster", tls=good) as c:
        c.add_worker("secure", price=0.1)
        c.wait()
        yield c, good, make_tls(base / "rogue", "rogue CA")


@pytest.mark.slow
def test_mutual_tls(tls_cluster, echo: Program, monkeypatch: pytest.MonkeyPatch) -> None:
    c, good, rogue = tls_cluster
    assert c.address.startswith("tls://")
    with DaskExecutor(c.address, (good.ca, good.cert, good.key)) as ex:
        (provider,) = ex.wait_for_providers(1, timeout=60)
        assert provider.id.startswith("tls://") and provider.price == 0.1
        # The operator is the certificate's identity as the scheduler saw it.
        assert provider.operator == "secure/gflite-provider"
        r = ex.submit(echo, echo_subtask(0, "secret"), LIMITS).result(60)
        assert r.ok and r.outputs[0][1] == b"secret\0"
    for name, path in zip(dask_executor.TLS_ENV, (good.ca, good.cert, good.key)):
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("GFLITE_CLUSTER", c.address)
    with DaskExecutor.from_env() as ex:
        assert len(ex.providers()) == 1


@pytest.mark.slow
def test_tls_refuses_clients_without_the_right_certificate(tls_cluster) -> None:
    c, good, rogue = tls_cluster
    start = time.monotonic()
    # Our own CA but a certificate the cluster's CA never signed: the scheduler refuses.
    with pytest.raises(ClusterError) as err:
        DaskExecutor(c.address, (good.ca, rogue.cert, rogue.key), connect_timeout=3)
    assert "TLS" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ClusterError, match="TLS"):
        DaskExecutor(c.address, (rogue.ca, rogue.cert, rogue.key), connect_timeout=3)
    # Signed by the cluster's CA, but a provider's: it may not act as a client.
    with pytest.raises(ClusterError, match="cannot connect") as err:
        DaskExecutor(c.address, (good.ca, good.provider_cert, good.provider_key),
                     connect_timeout=3)
    assert err.value.exit_code == 8 and "\n" not in str(err.value)
    with pytest.raises(ClusterError, match="uses TLS"):
        DaskExecutor(c.address)
    with pytest.raises(ClusterError):
        DaskExecutor(c.address.replace("tls://", "tcp://"), connect_timeout=3)
    assert time.monotonic() - start < 20


@pytest.mark.slow
def test_a_cancelled_attempt_frees_its_worker(cluster: Cluster, executor, echo: Program,
                                             tmp_path: Path) -> None:
    bob = cluster.workers["bob"].address  # one thread: the next attempt waits for this one
    f = spin_until_running(executor, cluster, "bob", tmp_path)
    assert f.cancel()
    start = time.monotonic()
    r = executor.submit(echo, echo_subtask(0, "next"), LIMITS, provider=bob).result(timeout=60)
    assert r.ok and time.monotonic() - start < 10


@pytest.mark.slow
def test_losing_the_scheduler_fails_attempts_then_refuses_work(tmp_path: Path) -> None:
    spin = make_program(tmp_path, SPIN_WAT)
    with Cluster(tmp_path / "cluster") as c:
        c.add_worker("only")
        c.wait()
        with DaskExecutor(c.address, connect_timeout=2) as ex:
            f = spin_until_running(ex, c, "only", tmp_path)
            os.killpg(c._scheduler.pid, signal.SIGKILL)
            r = f.result(timeout=30)
            assert not r.ok and r.reason == f"lost the cluster scheduler {c.address}"

            def refused() -> bool:
                try:
                    ex.submit(spin, echo_subtask(1), LIMITS)
                except ClusterError as exc:
                    return "lost the cluster scheduler" in str(exc)
                return False

            wait_until(refused, timeout=30)
