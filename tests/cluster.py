"""Real Dask clusters on 127.0.0.1 for the slow tests, started as the README says.

Scheduler and workers are ordinary ``dask scheduler`` / ``dask worker``
subprocesses, each in its own session so that :meth:`Cluster.stop` can end
exactly the process groups it started, also when a test fails. By default
the scheduler and the workers are hardened (the gflite preloads and blocked
handlers by environment); ``hardened=False`` gives the same cluster without
(for the attack tests' "before" and the benchmark's baseline).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from gflite.gwasm.executors.dask.guard import blocked_env
from gflite.gwasm.subtask import Program, Subtask

REPO = Path(__file__).absolute().parent.parent
PROVIDER_PRELOAD = "gflite.gwasm.executors.dask.provider"
SCHEDULER_PRELOAD = "gflite.gwasm.executors.dask.scheduler"
FAULTY_PRELOAD = str(Path(__file__).absolute().parent / "faulty_preload.py")
UNHARDENED_PRELOAD = str(Path(__file__).absolute().parent / "unhardened_preload.py")
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class TLSFiles:
    """A CA, the requestor's certificate (``cert``/``key``: scheduler and client)
    and a provider certificate (``provider_cert``/``provider_key``); the CA's key
    signs each worker a certificate of its own (:meth:`provider`)."""

    ca: Path
    cert: Path
    key: Path
    provider_cert: Path
    provider_key: Path
    ca_key: Path

    def provider(self, operator: str) -> tuple[Path, Path]:
        """A provider certificate for ``operator`` (its CN): each provider has its
        own, and two workers given one operator are one operator's."""
        directory = self.ca.parent
        cert = directory / f"op-{operator}.pem"
        if not cert.exists():
            return _sign(directory, self.ca, self.ca_key, f"op-{operator}",
                         f"/CN={operator}/OU=gflite-provider")
        return cert, directory / f"op-{operator}-key.pem"


def _sign(directory: Path, ca: Path, ca_key: Path, name: str, subject: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", subject],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "7", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return cert, key


def make_tls(directory: Path, ca_name: str = "gflite test CA") -> TLSFiles:
    """A fresh CA and two certificates signed by it, one per role (the subject OU):
    the requestor's and one provider's.

    Made with the ``openssl`` command (it comes with ca-certificates), so the tests
    need no extra Python package."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key), "-out",
                    str(ca), "-days", "7", "-subj", f"/CN={ca_name}"],
                   check=True, capture_output=True)
    cert, key = _sign(directory, ca, ca_key, "requestor", "/CN=requestor/OU=gflite-requestor")
    pcert, pkey = _sign(directory, ca, ca_key, "provider", "/CN=provider-1/OU=gflite-provider")
    return TLSFiles(ca, cert, key, pcert, pkey, ca_key)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log: Path
    address: str = ""


class Cluster:
    """One scheduler plus named workers; use as a context manager."""

    def __init__(self, workdir: Path, tls: TLSFiles | None = None, *,
                 hardened: bool = True) -> None:
        self.workdir = workdir
        self.tls = tls
        self.hardened = hardened
        self.address = ""
        self.workers: dict[str, Worker] = {}
        self._scheduler: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def _tls_args(self, operator: str | None = None) -> list[str]:
        if not self.tls:
            return []
        cert, key = self.tls.provider(operator) if operator else (self.tls.cert, self.tls.key)
        return ["--tls-ca-file", str(self.tls.ca), "--tls-cert", str(cert), "--tls-key", str(key)]

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("GFLITE_PRICE", None)
        if self.hardened:
            env.update(blocked_env())
        env.update(extra or {})
        return env

    def _spawn(self, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        with log.open("wb") as out:
            return subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.workdir, start_new_session=True,
            )

    def start(self) -> Cluster:
        sched_file = self.workdir / "scheduler.json"
        protocol = ["--protocol", "tls"] if self.tls else []
        preload = ["--preload", SCHEDULER_PRELOAD] if self.hardened else []
        self._scheduler = self._spawn(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file),
             *preload, *protocol, *self._tls_args()],
            self.workdir / "scheduler.log",
            self._env(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not sched_file.exists() or not sched_file.read_text().strip().endswith("}"):
            self._check_alive(self._scheduler, self.workdir / "scheduler.log", deadline)
            time.sleep(0.05)
        self.address = json.loads(sched_file.read_text())["address"]
        return self

    def add_worker(
        self,
        name: str,
        *,
        price: float | None = None,
        nthreads: int = 1,
        nanny: bool = False,
        faulty: str | None = None,
        env: dict[str, str] | None = None,
        operator: str | None = None,
    ) -> Worker:
        """Start a worker (not waiting for it; see :meth:`wait`).

        ``faulty`` loads tests/faulty_preload.py, which answers as that hostile
        provider would (see its docstring). Unhardened clusters' workers get the
        same two preloads as before the hardening existed: the provider one is
        what makes a worker a gflite provider, so they load its tasks only.
        Under TLS each worker has a certificate of its own, for ``operator``
        (default: its name).
        """
        tmp = self.workdir / f"tmp-{name}"
        tmp.mkdir(exist_ok=True)
        # TMPDIR too: a worker killed in a test leaves its sandbox directories there.
        extra = {"GFLITE_CACHE_DIR": str(self.workdir / f"cache-{name}"), "TMPDIR": str(tmp)}
        if price is not None:
            extra["GFLITE_PRICE"] = repr(price)
        if self.hardened:
            preload = ["--preload", PROVIDER_PRELOAD, "--preload-nanny", PROVIDER_PRELOAD]
        else:
            preload = ["--preload", UNHARDENED_PRELOAD]
        if faulty is not None:
            extra["GFLITE_TEST_FAULT"] = faulty
            preload += ["--preload", FAULTY_PRELOAD]
        extra.update(env or {})
        log = self.workdir / f"worker-{name}.log"
        proc = self._spawn(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
             "--name", name, "--nthreads", str(nthreads), "--host", "127.0.0.1",
             "--no-dashboard", "--nanny" if nanny else "--no-nanny",
             "--local-directory", str(self.workdir / f"scratch-{name}"),
             *preload, *self._tls_args(operator or re.sub(r"[^A-Za-z0-9_.-]", "_", name))],
            log,
            self._env(extra),
        )
        worker = Worker(name, proc, log)
        self.workers[name] = worker
        return worker

    def wait(self, *names: str) -> None:
        """Block until the named (default: all) workers registered with the scheduler."""
        deadline = time.monotonic() + START_TIMEOUT
        for name in names or tuple(self.workers):
            w = self.workers[name]
            while True:
                text = w.log.read_text(errors="replace")
                m = re.search(r"Start worker at:\s+(\S+)", text)
                if m and "Registered to:" in text:
                    w.address = m.group(1)
                    break
                self._check_alive(w.proc, w.log, deadline)
                time.sleep(0.05)

    def signal(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.workers[name].proc.pid, sig)

    def remove_worker(self, name: str) -> None:
        """Stop a worker (and its process group) and forget it."""
        self._stop([self.workers.pop(name).proc])

    def running(self, name: str) -> bool:
        """Whether the worker is running a guest right now: its sandbox keeps one
        private directory per running attempt in the worker's TMPDIR."""
        return any((self.workdir / f"tmp-{name}").glob("gwasm-attempt-*"))

    def _check_alive(self, proc: subprocess.Popen, log: Path, deadline: float) -> None:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"{proc.args[2]} exited {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[2]} did not start in time:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        # Workers first: a worker closing while its scheduler closes can hang in Dask.
        self._stop([w.proc for w in self.workers.values()])
        if self._scheduler:
            self._stop([self._scheduler])

    @staticmethod
    def _stop(procs: list[subprocess.Popen]) -> None:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The whole group: nanny-started worker processes and sandbox children too.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- tiny guests for the cluster tests ---------------------------------------

# Writes its arguments (after argv[0], each NUL-terminated) to out.txt.
ECHO_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "out.txt")
  (data (i32.const 3000) "NONCE")
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 1024) (i32.const 2048)))
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 9)
                    (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8))
      (then unreachable))
    (i32.store (i32.const 32) (i32.load (i32.const 1028)))
    (i32.store (i32.const 36) (i32.sub (i32.add (i32.const 2048) (i32.load (i32.const 4)))
                                       (i32.load (i32.const 1028))))
    (drop (call $write (i32.load (i32.const 8)) (i32.const 32) (i32.const 1) (i32.const 40)))))
"""


def make_program(directory: Path, wat: str, nonce: str = "NONCE") -> Program:
    """A program with its own sha256 when given its own nonce."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat.replace('"NONCE"', f'"{nonce}"')))
    return Program.from_path(path)


def echo_subtask(index: int, *words: str) -> Subtask:
    return Subtask(index, f"echo-{index}", tuple(words), (), ("out.txt",))
