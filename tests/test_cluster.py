"""Both CLIs end to end on real ``dask scheduler``/``dask worker`` processes on 127.0.0.1.

One module-wide cluster of three honest providers (alice, bob, carol, priced
0.01/0.02/0.03 per CPU-second); tests that need a provider that dies or lies
add it and take it away again. Every run gets a fresh result cache, so the
cluster really does the work; the workers share the session's compiled-module
cache, so flite.wasm is compiled once.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Cluster, make_tls
from gflite.gwasm.executors import dask as dask_executor

ROOT = Path(__file__).resolve().parent.parent
DIALOGUE = str(ROOT / "sample_texts" / "dialogue.txt")
PRICES = {"alice": 0.01, "bob": 0.02, "carol": 0.03}
# A worker killed mid-run must not cost more than this (retries on the others included).
KILL_BOUND = 60.0


@pytest.fixture(autouse=True)
def _no_cluster_settings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GFLITE_CLUSTER", "GFLITE_PRICE", *dask_executor.TLS_ENV):
        monkeypatch.delenv(name, raising=False)
    if "cluster" in request.fixturenames:  # the requestor's certificate for the shared cluster
        tls = request.getfixturevalue("cluster").tls
        for name, path in zip(dask_executor.TLS_ENV, (tls.ca, tls.cert, tls.key)):
            monkeypatch.setenv(name, str(path))


def run_cli(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def gflite(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           cache: Path) -> tuple[int, str]:
    """``gflite ARGV`` in this process with its own result cache; (exit code, stderr)."""
    from gflite.cli import main

    monkeypatch.setenv("GFLITE_CACHE_DIR", str(cache))
    code, _, err = run_cli(main, argv, capsys)
    return code, err


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The local runs the cluster runs must equal, made before any Dask client exists."""
    from gflite.cli import main

    out = tmp_path_factory.mktemp("reference")
    refs = {}
    for voice, subtasks in (("kal16", "6"), ("slt", "8")):
        path = out / f"{voice}.wav"
        with pytest.raises(SystemExit) as info:
            main(["-f", DIALOGUE, "-voice", voice, "--subtasks", subtasks, "-j", "2", "-q",
                  "-o", str(path)])
        assert info.value.code == 0
        refs[voice] = path.read_bytes()
    timings = out / "timings.json"
    with pytest.raises(SystemExit) as info:
        main(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-j", "2", "-q", "-o", "none",
              "--timings", str(timings)])
    assert info.value.code == 0
    refs["timings"] = timings.read_bytes()
    return refs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, gflite_cache_dir: Path,
            references: dict[str, bytes]) -> Iterator[Cluster]:
    # TLS, as the README runs a cluster: each provider has its own certificate, so
    # each is its own operator (without TLS all of 127.0.0.1 would be one).
    base = tmp_path_factory.mktemp("cluster")
    with Cluster(base / "cluster", tls=make_tls(base / "tls")) as c:
        for name, price in PRICES.items():
            c.add_worker(name, price=price, env={"GFLITE_CACHE_DIR": str(gflite_cache_dir)})
        c.wait()
        yield c


def bill(err: str) -> dict[str, str]:
    """The cost summary's lines by worker name."""
    return {m[1]: m[2] for m in re.finditer(r"^gflite: (\w+) \(tls://[^)]+\): (.*)$", err, re.M)}


def only_our_lines(err: str) -> None:
    """Nothing but gflite's own notes on stderr: Dask's logging is kept quiet."""
    assert all(line.startswith("gflite: ") for line in err.splitlines()), err


@pytest.mark.slow
def test_gflite_on_a_cluster_matches_the_local_run(
    cluster: Cluster, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out.wav"
    code, err = gflite(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-o", str(out),
                        "--cluster", cluster.address], capsys, monkeypatch, tmp_path / "cache")
    assert code == 0, err
    assert out.read_bytes() == references["kal16"]
    only_our_lines(err)
    lines = bill(err)
    assert len(lines) >= 2, err  # the work was spread
    assert sum(int(re.match(r"(\d+)/", v)[1]) for v in lines.values()) == 6
    assert re.search(r"^gflite: total: \S+$", err, re.M)


@pytest.mark.slow
def test_timings_on_a_cluster_with_redundancy_match_the_local_run(
    cluster: Cluster, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timing files come back from Dask workers as outputs, compared between two
    providers: the word times are the local run's, and so is the audio."""
    out, timings = tmp_path / "out.wav", tmp_path / "timings.json"
    code, err = gflite(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-o", str(out),
                        "--timings", str(timings), "--redundancy", "2", "--cluster", cluster.address],
                       capsys, monkeypatch, tmp_path / "cache")
    assert code == 0, err
    assert timings.read_bytes() == references["timings"]
    assert out.read_bytes() == references["kal16"]
    assert len(json.loads(timings.read_bytes())["words"]) > 20


@pytest.mark.slow
def test_a_provider_killed_mid_run_costs_only_a_retry(
    cluster: Cluster, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, gflite_cache_dir: Path,
) -> None:
    # The cheapest provider gets work first, and is SIGKILLed while a guest runs there.
    cluster.add_worker("doomed", price=0.0, env={"GFLITE_CACHE_DIR": str(gflite_cache_dir)})
    cluster.wait("doomed")
    killed: list[float] = []

    def killer() -> None:
        deadline = time.monotonic() + KILL_BOUND
        while time.monotonic() < deadline:
            if cluster.running("doomed"):
                cluster.signal("doomed", signal.SIGKILL)
                killed.append(time.monotonic())
                return
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = tmp_path / "out.wav"
    started = time.monotonic()
    try:
        code, err = gflite(["-f", DIALOGUE, "-voice", "slt", "--subtasks", "8", "-o", str(out),
                            "--cluster", cluster.address], capsys, monkeypatch, tmp_path / "cache")
    finally:
        thread.join(timeout=KILL_BOUND)
        cluster.remove_worker("doomed")
    assert killed, "the doomed worker never ran a guest"
    assert code == 0, err
    assert time.monotonic() - started < KILL_BOUND
    assert out.read_bytes() == references["slt"]
    only_our_lines(err)
    done, tried = map(int, re.match(r"(\d+)/(\d+) results", bill(err)["doomed"]).groups())
    assert done < tried  # its attempts were lost and run again elsewhere


@pytest.mark.slow
def test_bid_budget_and_cost_summary(
    cluster: Cluster, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "--cluster", cluster.address]
    out = tmp_path / "out.wav"
    # Only alice asks at most 0.015 per CPU-second.
    code, err = gflite([*base, "-o", str(out), "--bid", "0.015", "--budget", "1"],
                       capsys, monkeypatch, tmp_path / "c1")
    assert code == 0, err
    assert out.read_bytes() == references["kal16"]
    lines = bill(err)
    assert list(lines) == ["alice"], err
    seconds = float(re.match(r"6/6 results, (\S+) CPU-s x 0.01 = (\S+)$", lines["alice"])[1])
    total = float(re.search(r"^gflite: total: (\S+) of budget 1$", err, re.M)[1])
    assert total == pytest.approx(seconds * 0.01, rel=0.01, abs=1e-6) and 0 < total <= 1
    # Too few providers under the bid for the redundancy: refused before any work.
    code, err = gflite([*base, "-o", str(tmp_path / "no.wav"), "--bid", "0.015", "--redundancy", "2"],
                       capsys, monkeypatch, tmp_path / "c2")
    assert code == 7
    assert re.fullmatch(r"gflite: error: only 1 of \d+ providers at or under the bid 0.015/CPU-s, run by 1 "
                        r"operators; redundancy 2 needs 2 distinct operators\n", err), err
    assert not (tmp_path / "no.wav").exists()
    # A budget too small for even one chunk.
    code, err = gflite([*base, "-o", str(tmp_path / "no.wav"), "--budget", "0.00000001"],
                       capsys, monkeypatch, tmp_path / "c3")
    assert code == 7
    assert err.startswith("gflite: error: budget 1e-08 would be exceeded: 0 spent") and err.count("\n") == 1


@pytest.fixture
def liar(cluster: Cluster, gflite_cache_dir: Path) -> Iterator[str]:
    """mallory: the cheapest provider, and every output she returns is corrupted."""
    cluster.add_worker("mallory", price=0.001, faulty="mallory",
                       env={"GFLITE_CACHE_DIR": str(gflite_cache_dir)})
    cluster.wait("mallory")
    yield cluster.workers["mallory"].address
    cluster.remove_worker("mallory")


@pytest.mark.slow
def test_a_lying_provider_is_outvoted_named_and_excluded(
    cluster: Cluster, liar: str, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bid leaves three providers: mallory, alice and bob (carol asks 0.03).
    monkeypatch.setenv("GFLITE_CLUSTER", cluster.address)
    out = tmp_path / "out.wav"
    code, err = gflite(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-o", str(out),
                        "--redundancy", "2", "--bid", "0.02"], capsys, monkeypatch, tmp_path / "cache")
    assert code == 0, err
    assert out.read_bytes() == references["kal16"]
    only_our_lines(err)
    assert f"gflite: excluded mallory ({liar}): subtask " in err
    assert re.search(rf"rejected {re.escape(liar)}$", err, re.M)
    lines = bill(err)
    assert lines["mallory"].endswith("= 0  rejected (lost a vote), not paid")
    assert "carol" not in lines
    assert re.search(r"^gflite: verified 6 subtasks on 2 operators each; [1-6] with disagreeing results$",
                     err, re.M), err


@pytest.mark.slow
def test_an_audit_catches_a_forger_at_redundancy_1(
    cluster: Cluster, liar: str, references: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mallory (cheapest) and alice are under the bid; nothing is run twice on the
    # cluster, but every accepted chunk is run again on this machine.
    monkeypatch.setenv("GFLITE_CLUSTER", cluster.address)
    out = tmp_path / "out.wav"
    code, err = gflite(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-o", str(out),
                        "--bid", "0.01", "--audit", "1"], capsys, monkeypatch, tmp_path / "cache")
    assert code == 0, err
    assert out.read_bytes() == references["kal16"]
    only_our_lines(err)
    assert f"gflite: excluded mallory ({liar}): audit of subtask " in err
    assert re.search(r"^gflite: audited 6 subtasks in this machine's sandbox; [1-6] forged$", err, re.M), err
    assert bill(err)["mallory"].endswith("rejected (lost a vote), not paid")


@pytest.mark.slow
def test_two_lying_workers_of_one_operator_are_one_vote(
    cluster: Cluster, references: dict[str, bytes], tmp_path: Path, gflite_cache_dir: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Sybil: one operator (one certificate identity) runs two of the cheapest
    workers, lying alike. Replicas go to distinct operators, so her two workers
    never vote on one chunk together, and the honest ones outvote her.
    (Replicas by distinct worker, cheapest first, made her forgery the verified,
    cached result.)"""
    env = {"GFLITE_CACHE_DIR": str(gflite_cache_dir)}
    for name in ("sybil1", "sybil2"):
        cluster.add_worker(name, price=0.001, faulty="sybil", operator="mallory", env=env)
    try:
        cluster.wait("sybil1", "sybil2")
        monkeypatch.setenv("GFLITE_CLUSTER", cluster.address)
        out = tmp_path / "out.wav"
        code, err = gflite(["-f", DIALOGUE, "-voice", "kal16", "--subtasks", "6", "-o", str(out),
                            "--redundancy", "2", "--bid", "0.02"], capsys, monkeypatch,
                           tmp_path / "cache")
        assert code == 0, err
        assert out.read_bytes() == references["kal16"]
        # Her forgery lost a vote (replicas are drawn among operators, seeded), and the
        # operator is excluded with all her workers.
        for name in ("sybil1", "sybil2"):
            assert f"gflite: excluded {name} (" in err, err
        assert re.search(r"^gflite: verified 6 subtasks on 2 operators each; ", err, re.M), err
    finally:
        for name in ("sybil1", "sybil2"):
            cluster.remove_worker(name)


# --- gwasm run on the cluster ------------------------------------------------


def upper_task(root: Path, wasm: Path, n: int = 6) -> Path:
    (root / "in").mkdir(parents=True)
    shutil.copy(wasm, root / "in" / "upper.wasm")
    subtasks = {}
    for i in range(1, n + 1):
        (root / "in" / f"part{i}").mkdir()
        (root / "in" / f"part{i}" / "in.txt").write_text(f"part number {i}\n")
        subtasks[f"part{i}"] = {"exec_args": ["in.txt", "out.txt"], "output_file_paths": ["out.txt"]}
    task = {"type": "wasm", "name": "upper", "bid": 0.05, "subtask_timeout": "00:01:00",
            "timeout": "00:05:00",
            "options": {"wasm_name": "upper.wasm", "input_dir": "in", "output_dir": "out",
                        "subtasks": subtasks}}
    (root / "task.json").write_text(json.dumps(task))
    return root / "task.json"


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.txt"))}


@pytest.mark.slow
def test_gwasm_run_on_a_cluster_with_redundancy_2(
    cluster: Cluster, wat_program, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gflite.gwasm.cli import main

    task = upper_task(tmp_path, wat_program("upper").path)
    monkeypatch.setenv("GFLITE_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_cli(main, ["run", str(task), "--cluster", cluster.address,
                                    "--redundancy", "2"], capsys)
    assert code == 0, err
    assert err == ""
    assert outputs(tmp_path / "out") == {f"part{i}/out.txt": f"PART NUMBER {i}\n".encode()
                                         for i in range(1, 7)}
    assert out.startswith("upper: 6 done, 0 failed, ")
    assert "  verified 6 subtasks on 2 operators each; 0 with disagreeing results\n" in out
    assert re.search(r"^  total: \S+$", out, re.M)
    # task.json's bid (0.05) is the default: a lower --bid leaves too few providers.
    monkeypatch.setenv("GFLITE_CACHE_DIR", str(tmp_path / "cache2"))
    code, out, err = run_cli(main, ["run", str(task), "--cluster", cluster.address,
                                    "--redundancy", "3", "--bid", "0.02"], capsys)
    assert code == 7 and err.startswith("gwasm: error: only 2 of ")


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, gflite_cache_dir: Path):
    base = tmp_path_factory.mktemp("tls")
    good = make_tls(base / "good")
    with Cluster(base / "cluster", tls=good) as c:
        c.add_worker("secure", env={"GFLITE_CACHE_DIR": str(gflite_cache_dir)})
        c.wait()
        yield c, good, make_tls(base / "rogue", "rogue CA")


def use_tls(monkeypatch: pytest.MonkeyPatch, ca: Path, cert: Path, key: Path) -> None:
    for name, path in zip(dask_executor.TLS_ENV, (ca, cert, key)):
        monkeypatch.setenv(name, str(path))


@pytest.mark.slow
def test_tls_refuses_a_client_without_the_right_certificate(
    tls_cluster, wat_program, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gflite.gwasm.cli import main as gwasm

    c, good, rogue = tls_cluster
    task = upper_task(tmp_path, wat_program("upper").path, n=2)
    use_tls(monkeypatch, good.ca, rogue.cert, rogue.key)  # a certificate the cluster never signed
    code, err = gflite(["-t", "hello", "-o", str(tmp_path / "x.wav"), "--cluster", c.address],
                       capsys, monkeypatch, tmp_path / "c1")
    assert code == 8
    assert re.fullmatch(rf"gflite: error: cannot connect to cluster scheduler {re.escape(c.address)}: "
                        r"TLS handshake refused .*\n", err), err
    code, out, err = run_cli(gwasm, ["run", str(task), "--cluster", c.address], capsys)
    assert code == 8 and err.startswith("gwasm: error: cannot connect to cluster scheduler ")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
    # With the cluster's own certificate the same task runs, encrypted.
    use_tls(monkeypatch, good.ca, good.cert, good.key)
    code, out, err = run_cli(gwasm, ["run", str(task), "--cluster", c.address, "-q"], capsys)
    assert code == 0, err
    assert outputs(tmp_path / "out") == {"part1/out.txt": b"PART NUMBER 1\n",
                                         "part2/out.txt": b"PART NUMBER 2\n"}
