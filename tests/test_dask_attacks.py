"""Attacks on a hardened cluster, each a real one: a real TLS scheduler and real
providers on 127.0.0.1 started as the README says, a bare ``distributed.Client``
and direct comms as the hostile requestor (or a provider's certificate acting
as one), and a test-only preload as the hostile provider.

``GFLITE_TEST_UNHARDENED=1`` runs the same attacks against the same cluster
without the gflite preloads (what the README recipe was before): they succeed,
so these tests fail. That is how they were watched failing. The hostile
answers were watched failing with the requestor's side disabled by hand
(``requestor.harden`` returning at once, the size checks and the reason check
removed): commands ran, 2861 MiB (bomb), 572 MiB (flood) and 448 MiB (a size
lie) were allocated, the escapes went through unexcluded.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import ECHO_WAT, Cluster, echo_subtask, make_program, make_tls
from faulty_preload import RunsACommand
from memory import traced_peak
from gflite.cli_shared import for_terminal
from gflite.gwasm import execution, sandbox
from gflite.gwasm.executors.dask import DaskExecutor, tasks
from gflite.gwasm.market import Market
from gflite.gwasm.subtask import Failure, Limits, Subtask

HARDENED = os.environ.get("GFLITE_TEST_UNHARDENED") != "1"
LIMITS = Limits(subtask_timeout=60.0, stdio_bytes=64 << 10, output_bytes=1 << 20)
MALLORY = "mallory\x1b[2J\x1b]0;pwned\x07\n  total: 0"
GRACE = 2.0  # a side effect, if any, lands within this after the call answered

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GFLITE_CLUSTER", "GFLITE_PRICE", "GFLITE_TLS_CA", "GFLITE_TLS_CERT",
                 "GFLITE_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


class Site:
    """One hardened TLS cluster for every attack in this module: two honest
    providers (bob behind a nanny) and mallory, whose answers a file decides."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.tls = make_tls(base / "tls")
        self.fault = base / "fault"
        self.fault.write_text("honest")
        self.cluster = Cluster(base / "cluster", tls=self.tls, hardened=HARDENED)
        self.n = 0

    def sentinel(self) -> Path:
        self.n += 1
        return self.base / f"sentinel-{self.n}"

    def requestor(self):
        from distributed import Security

        return Security(tls_ca_file=str(self.tls.ca), tls_client_cert=str(self.tls.cert),
                        tls_client_key=str(self.tls.key), require_encryption=True)

    def provider_cert(self):
        from distributed import Security

        return Security(tls_ca_file=str(self.tls.ca),
                        tls_client_cert=str(self.tls.provider_cert),
                        tls_client_key=str(self.tls.provider_key), require_encryption=True)

    def executor(self) -> DaskExecutor:
        ex = DaskExecutor(self.cluster.address, (self.tls.ca, self.tls.cert, self.tls.key),
                          stale_after=10, rejoin_grace=5)
        ex.wait_for_providers(3, timeout=60)
        return ex


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, gflite_cache_dir: Path):
    s = Site(tmp_path_factory.mktemp("attacks"))
    modules = {"GFLITE_CACHE_DIR": str(gflite_cache_dir)}  # flite.wasm compiled once
    with s.cluster as c:
        c.add_worker("alice", price=0.02, env=modules)
        c.add_worker("bob", price=0.03, nanny=True, env=modules)
        c.add_worker(MALLORY, price=0.001, faulty=f"file:{s.fault}", env=modules)
        c.wait()
        yield s


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory):
    return make_program(tmp_path_factory.mktemp("wasm"), ECHO_WAT)


def honest_job(site: Site, echo, n: int = 6) -> execution.TaskReport:
    """A gwasm job on the cluster, byte-identical to the same subtasks run here."""
    subtasks = [echo_subtask(i, "job", str(i)) for i in range(n)]
    report = execution.TaskReport()
    with site.executor() as ex:
        got = list(execution.run(ex, echo, subtasks, execution.RunTerms(limits=LIMITS, market=Market()),
                                 report=report))
    assert [r.outputs for r in got] == [sandbox.run_subtask(echo, st, LIMITS).outputs
                                        for st in subtasks]
    return report


def refused(call, sentinel: Path) -> None:
    """``call`` fails with an error and leaves no side effect."""
    with pytest.raises(Exception):
        call()
    time.sleep(GRACE)
    assert not sentinel.exists(), "the attack ran a command"


# --- a hostile requestor: a bare Client with the requestor's certificate ---------


@pytest.fixture(scope="module")
def client(site: Site):
    from distributed import Client

    with Client(site.cluster.address, security=site.requestor(), timeout=30,
                set_as_default=False) as c:
        yield c


def test_submit_of_any_other_callable_runs_nothing(site: Site, client, echo) -> None:
    for func in (os.system, subprocess.check_output):
        s = site.sentinel()
        arg = f"touch {s}" if func is os.system else ["touch", str(s)]
        refused(lambda: client.submit(func, arg, pure=False).result(timeout=60), s)


def test_run_and_run_on_scheduler_are_refused(site: Site, client) -> None:
    s = site.sentinel()
    refused(lambda: client.run(os.system, f"touch {s}"), s)
    refused(lambda: client.run(os.system, f"touch {s}", nanny=True), s)
    refused(lambda: client.run_on_scheduler(os.system, f"touch {s}"), s)


def test_plugins_and_upload_file_are_refused(site: Site, client, tmp_path: Path) -> None:
    from distributed.diagnostics.plugin import WorkerPlugin

    s = site.sentinel()

    class Plugin(WorkerPlugin):
        def setup(self, worker) -> None:
            os.system(f"touch {s}")

        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {s}",))

    refused(lambda: client.register_plugin(Plugin(), name="evil"), s)
    module = tmp_path / "gflite_evil_upload.py"
    module.write_text(f"import os\nos.system('touch {s}')\n")
    refused(lambda: client.upload_file(str(module)), s)

    # Straight to a provider's own upload_file handler: it would write any path
    # and import it, no pickle involved.
    from distributed.core import rpc

    async def upload(address: str) -> None:
        async with rpc(address, connection_args=site.requestor().get_connection_args("client")
                       ) as w:
            reply = await w.upload_file(filename=str(tmp_path / "direct.py"),
                                        data=module.read_bytes(), load=True)
            if reply.get("status") != "OK":
                raise RuntimeError(str(reply))

    target = site.cluster.workers["alice"].address
    refused(lambda: asyncio.run(upload(target)), s)
    assert not (tmp_path / "direct.py").exists()


def test_run_coroutine_and_actors_are_refused(site: Site, client) -> None:
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps

    s = site.sentinel()

    async def touch() -> None:
        os.system(f"touch {s}")

    async def direct(address: str) -> None:
        args = site.requestor().get_connection_args("client")
        async with rpc(address, connection_args=args) as w:
            for reply in (await w.run_coroutine(function=dumps(touch), args=dumps(()),
                                                kwargs=dumps({}), wait=True),
                          await w.actor_execute(actor="x", function="y", args=(), kwargs={})):
                if not (isinstance(reply, dict) and reply.get("status") == "error"):
                    return
        raise RuntimeError("refused")

    refused(lambda: asyncio.run(direct(site.cluster.workers["alice"].address)), s)
    refused(lambda: client.submit(subprocess.Popen, ["touch", str(s)], actor=True).result(60), s)


def test_a_task_argument_that_runs_a_command_is_refused(site: Site, client) -> None:
    # On the scheduler: it unpickles the graph first.
    s = site.sentinel()
    fut = client.submit(tasks.attempt, "0" * 64, RunsACommand(s), pure=False)
    deadline = time.monotonic() + 60
    while fut.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fut.status == "finished"  # the entry point answered "bad request", as data
    time.sleep(GRACE)
    assert not s.exists()
    # On a provider, sent straight to it: every message is unpickled on arrival.
    from distributed.comm import connect
    from distributed.protocol.serialize import ToPickle

    s2 = site.sentinel()

    async def send(address: str) -> object:
        comm = await connect(address, **site.requestor().get_connection_args("client"))
        try:
            await comm.write({"op": "get_data", "keys": ToPickle(RunsACommand(s2)),
                              "reply": True})
            return await asyncio.wait_for(comm.read(), 30)
        finally:
            comm.abort()

    asyncio.run(send(site.cluster.workers["alice"].address))
    time.sleep(GRACE)
    assert not s2.exists()


def test_a_provider_certificate_cannot_act_as_a_client(site: Site) -> None:
    from distributed import Client
    from distributed.core import rpc

    s = site.sentinel()

    def as_client() -> None:
        with Client(site.cluster.address, security=site.provider_cert(), timeout=10,
                    set_as_default=False) as c:
            c.run_on_scheduler(os.system, f"touch {s}")
            c.run(os.system, f"touch {s}")
            c.submit(os.system, f"touch {s}", pure=False).result(timeout=30)

    refused(as_client, s)

    async def fetch(address: str) -> None:
        async with rpc(address, connection_args=site.provider_cert().get_connection_args(
                "client")) as w:
            reply = await w.get_data(keys=["x"])
            if not (isinstance(reply, dict) and reply.get("status") == "OK"):
                raise RuntimeError(str(reply))

    # Nor talk to another provider directly.
    refused(lambda: asyncio.run(fetch(site.cluster.workers["alice"].address)), s)


def test_a_requestor_certificate_cannot_join_as_a_provider(site: Site) -> None:
    c = site.cluster
    log = c.workdir / "worker-impostor.log"
    proc = c._spawn(
        [sys.executable, "-m", "distributed.cli.dask_worker", c.address, "--name", "impostor",
         "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny",
         "--death-timeout", "20", "--preload", "gflite.gwasm.executors.dask.provider",
         *c._tls_args()],  # the requestor's certificate
        log, c._env({"GFLITE_PRICE": "0"}))
    try:
        deadline = time.monotonic() + 60
        scheduler_log = c.workdir / "scheduler.log"
        while "refused 'register-worker'" not in scheduler_log.read_text():
            assert "Registered to:" not in log.read_text(), "the impostor joined"
            assert proc.poll() is None or time.monotonic() < deadline, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no refusal seen"
            time.sleep(0.2)
        assert "Registered to:" not in log.read_text()
    finally:
        c._stop([proc])


def test_the_providers_still_serve_an_honest_job_after_the_attacks(site: Site, echo) -> None:
    report = honest_job(site, echo)
    assert not report.rejected


def test_and_an_honest_gflite_job_byte_identical_to_a_local_run(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], gflite_cache_dir: Path) -> None:
    """A real gflite run (flite.wasm) on the attacked cluster: a fresh result
    cache each, so both really synthesise; compiled modules from the session."""
    from gflite.cli import main

    dialogue = str(Path(__file__).parents[1] / "sample_texts" / "dialogue.txt")
    outs = {}
    for how, extra in (("local", ["-j", "2"]), ("cluster", ["--cluster", site.cluster.address])):
        monkeypatch.setenv("GFLITE_CACHE_DIR", str(tmp_path / f"cache-{how}"))
        if (gflite_cache_dir / "modules").is_dir():
            shutil.copytree(gflite_cache_dir / "modules", tmp_path / f"cache-{how}" / "modules")
        for name, path in zip(("GFLITE_TLS_CA", "GFLITE_TLS_CERT", "GFLITE_TLS_KEY"),
                              (site.tls.ca, site.tls.cert, site.tls.key)):
            monkeypatch.setenv(name, str(path))
        out = tmp_path / f"{how}.wav"
        with pytest.raises(SystemExit) as info:
            main(["-f", dialogue, "-voice", "kal16", "--subtasks", "4", "-q", "-o", str(out),
                  *extra])
        assert info.value.code == 0, capsys.readouterr().err
        outs[how] = out.read_bytes()
    assert outs["cluster"] == outs["local"]


# --- a hostile provider: mallory's answers ----------------------------------------


@pytest.mark.parametrize("fault", ["pickle-cmd", "exception-cmd", "bomb", "flood", "escapes"])
def test_a_hostile_answer_is_refused_retried_elsewhere_and_its_provider_excluded(
        site: Site, echo, fault: str) -> None:
    s = site.sentinel()
    site.fault.write_text(f"{fault}:{s}")
    mallory = site.cluster.workers[MALLORY].address
    # Python's own allocations, all threads (Dask's client loop included); a zeroed
    # bytes(3_000_000_000) would not show in RSS until touched, but shows here.
    try:
        with traced_peak() as traced:
            report = honest_job(site, echo)  # mallory is the cheapest: it is asked first
        peak = traced.bytes
    finally:
        site.fault.write_text("honest")
    assert not s.exists(), "the answer ran a command on the requestor"
    assert peak < 50 << 20, f"the requestor allocated {peak >> 20} MiB at its peak"
    assert mallory in report.rejected, report.lines()
    assert f"provider {mallory} returned " in report.rejected[mallory]
    bill = report.bill
    assert bill is not None and all(c.results == 0 for c in bill.providers
                                    if c.provider == mallory)
    # What reaches a terminal: the CLIs print every line through for_terminal.
    for line in report.lines():
        shown = for_terminal(line, 400)
        assert "\n" not in shown and "\x1b" not in shown and "\r" not in shown


def test_a_provider_that_under_reports_its_answers_size(site: Site, echo,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Dask reads a whole message before anyone sees it: the requestor refuses to
    read one over its cap (the largest answer its limits allow), so the answer is
    refused and its provider excluded without the bytes reaching its memory; the
    scheduler never fetches answers (its gather is blocked), so not its either."""
    site.fault.write_text("lying-size")
    mallory = site.cluster.workers[MALLORY].address
    scheduler_hwm = Path(f"/proc/{site.cluster._scheduler.pid}/status")

    def hwm() -> int:  # the scheduler's peak resident memory, MiB
        text = scheduler_hwm.read_text()
        return int(text.split("VmHWM:")[1].split()[0]) >> 10

    scheduler_before = hwm()
    try:
        with traced_peak() as traced:
            report = honest_job(site, echo)
        peak = traced.bytes
    finally:
        site.fault.write_text("honest")
    assert mallory in report.rejected, report.lines()
    assert report.rejected[mallory].endswith("over the requestor's cap of 67108864 bytes")
    assert peak < 50 << 20, f"the requestor allocated {peak >> 20} MiB at its peak"
    scheduler_after = hwm()
    with capsys.disabled():  # for the README
        print(f"\n150 MB answer under-reported as 100 bytes: requestor peak {peak >> 20} MiB; "
              f"scheduler peak RSS {scheduler_before} -> {scheduler_after} MiB")
    assert scheduler_after - scheduler_before < 100, "the scheduler read the answer"


def test_a_refused_answer_is_a_malformed_failure(site: Site, echo) -> None:
    s = site.sentinel()
    site.fault.write_text(f"pickle-cmd:{s}")
    try:
        with site.executor() as ex:
            mallory = site.cluster.workers[MALLORY].address
            r = ex.submit(echo, echo_subtask(0, "x"), LIMITS, provider=mallory).result(60)
            assert not r.ok and r.failure is Failure.MALFORMED
            assert mallory in ex.excluded()
            assert mallory not in {p.id for p in ex.providers()}
            again = ex.submit(echo, echo_subtask(1, "y"), LIMITS, provider=mallory).result(10)
            assert not again.ok and "excluded" in again.reason
    finally:
        site.fault.write_text("honest")
    assert not s.exists()


def test_a_lost_provider_is_a_lost_failure(site: Site, echo, tmp_path: Path) -> None:
    with site.executor() as ex:
        r = ex.submit(echo, Subtask(0, "gone", (), (), ("out.txt",)), LIMITS,
                      provider="tls://127.0.0.1:9").result(10)
    assert not r.ok and r.failure is Failure.LOST


def test_dask_http_servers_listen_on_loopback_only(site: Site) -> None:
    if sys.platform != "linux":
        pytest.skip("reads /proc/net/tcp")
    import psutil

    roots = [w.proc.pid for w in site.cluster.workers.values()] + [site.cluster._scheduler.pid]
    pids = {str(p) for p in roots}
    for root in roots:
        pids |= {str(c.pid) for c in psutil.Process(root).children(recursive=True)}
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    ours = [line for line in out.splitlines()
            if any(f"pid={p}," in line for p in pids)]
    assert ours, out
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), line
