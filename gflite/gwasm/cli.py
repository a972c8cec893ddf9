"""``gwasm run task.json``: run a bare gWASM task on this machine's cores or a Dask cluster.

Exit codes (from gflite.errors): 0 success, 1 other error, 2 bad usage,
4 malformed task file, 5 a subtask failed after its retries or the task timed
out, 6 providers disagreed past the redundancy bound, 7 too few providers at
or under the bid, or the budget would be exceeded, 8 the cluster cannot be
reached or refused us (TLS), 9 outputs could not be written, 130 interrupted
(Ctrl-C). Every error is one line ``gwasm: error: ...`` on stderr.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from gflite.errors import ExecutionError, GfliteError, Interrupted
from gflite.cli_shared import for_terminal, market_in_play, quiet_cluster_logs
from gflite.gwasm.subtask import SubtaskResult

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _gwasm() -> None:
    """gwasm: run any WASI program as sandboxed, parallel, reproducible subtasks."""


def _error(message: str) -> None:
    typer.echo(f"gwasm: error: {for_terminal(message, 2000)}", err=True)


@app.command()
def run(
    task: Path = typer.Argument(..., help="Task file in the gWASM format (task.json).", show_default=False),
    workers: Optional[int] = typer.Option(  # noqa: UP007 (typer needs Optional on 3.9-style hints)
        None, "--workers", "-w", min=1, help="Worker processes [default: all cores]."
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts for a failed subtask."),
    cluster: Optional[str] = typer.Option(  # noqa: UP007
        None, "--cluster", metavar="ADDRESS", envvar="GFLITE_CLUSTER",
        help="Run on a Dask scheduler (tcp://host:8786 or tls://...); TLS files from "
             "GFLITE_TLS_CA, GFLITE_TLS_CERT, GFLITE_TLS_KEY.",
    ),
    redundancy: int = typer.Option(
        1, "--redundancy", min=1, metavar="K",
        help="Run each subtask on K distinct providers and compare their outputs.",
    ),
    bid: Optional[float] = typer.Option(  # noqa: UP007
        None, "--bid", min=0, help="Most you pay per CPU-second [default: the task's bid]."
    ),
    budget: Optional[float] = typer.Option(  # noqa: UP007
        None, "--budget", min=0, help="Most you pay for the whole task."
    ),
    audit: float = typer.Option(
        0.0, "--audit", min=0.0, max=1.0, metavar="P",
        help="Run a fraction P of the results accepted from a cluster again on this machine; "
             "a provider caught forging one is excluded.",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither replay nor store results."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Run TASK's subtasks sandboxed in parallel; outputs go to output_dir/<subtask>/.

    Finished subtasks are cached, so a rerun resumes where the last one stopped
    (see `gwasm cache`).
    """
    try:
        _run(task, workers, retries, quiet, cluster=cluster, redundancy=redundancy, bid=bid,
             budget=budget, audit=audit, use_cache=not no_cache)
    except GfliteError as exc:
        _error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _error("interrupted; finished subtasks are cached, rerun to resume")
        raise typer.Exit(Interrupted.exit_code) from None


@app.command()
def cache(
    action: str = typer.Argument(..., metavar="info|clear", help="Show the result cache, or empty it."),
) -> None:
    """The result cache: where it is and how full (info), or empty it (clear).

    Its size is capped by GFLITE_CACHE_MAX (e.g. 500M, 4G; default 2G); the
    least recently used results are evicted first.
    """
    try:
        for line in cache_action(action):
            typer.echo(line)
    except GfliteError as exc:
        _error(str(exc))
        raise typer.Exit(exc.exit_code) from None


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def cache_action(action: str) -> list[str]:
    """``info`` or ``clear`` on the user's result cache, as lines to print (the
    ``gwasm cache`` and ``gflite --cache-info/--cache-clear`` commands)."""
    from gflite.errors import UsageError
    from gflite.gwasm.cache import ResultCache

    if action not in ("info", "clear"):
        raise UsageError(f"cache takes info or clear, not {for_terminal(action)!r}")
    cache = ResultCache()
    if cache.disabled_reason:
        return [f"result cache disabled: {cache.disabled_reason}"]
    if action == "clear":
        return [f"removed {_size(cache.clear())} of results from {cache.root / 'results'}"]
    info = cache.info()
    return [f"result cache: {info.path}", f"  {info.entries} results, {_size(info.bytes)} "
            f"of {_size(info.max_bytes)} (GFLITE_CACHE_MAX; least recently used evicted first)"]


def _run(task_path: Path, workers: int | None, retries: int, quiet: bool, *,
         cluster: str | None = None, redundancy: int = 1, bid: float | None = None,
         budget: float | None = None, audit: float = 0.0, use_cache: bool = True) -> None:
    from gflite.gwasm import execution
    from gflite.gwasm.market import Market
    from gflite.gwasm.task import load_task, write_outputs

    started = time.monotonic()
    spec = load_task(task_path)
    show_bill = market_in_play(cluster, redundancy, bid, budget)
    market = Market(bid=spec.bid if bid is None else bid, budget=budget)
    report = execution.TaskReport()
    if cluster:
        quiet_cluster_logs()
    counts = {"done": 0, "cached": 0, "failed": 0}

    import tqdm

    # tqdm's monitor thread would stop the executor from forking its workers cheaply.
    tqdm.tqdm.monitor_interval = 0
    bar = tqdm.tqdm(
        total=len(spec.subtasks),
        desc=spec.name,
        unit="subtask",
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )

    def on_result(result: SubtaskResult, from_cache: bool) -> None:
        if result.ok:
            counts["done"] += 1
            counts["cached"] += from_cache
        else:
            counts["failed"] += 1
        bar.update(1)

    def summary() -> None:
        if not quiet:
            cached = f" ({counts['cached']} from cache)" if counts["cached"] else ""
            typer.echo(
                f"{spec.name}: {counts['done']} done{cached}, {counts['failed']} failed, "
                f"{time.monotonic() - started:.1f} s; outputs in {spec.output_dir}"
            )
            lines = report.lines() if show_bill else [
                line for line in report.lines() if line.startswith("excluded ")]
            for line in lines:  # names and verdicts come from providers
                typer.echo(f"  {for_terminal(line, 400)}")

    terms = execution.RunTerms(limits=spec.limits, retries=retries, redundancy=redundancy,
                               task_timeout=spec.timeout, market=market, audit=audit,
                               use_cache=use_cache)
    written: set[int] = set()
    try:
        results = execution.run_task(spec.program, spec.subtasks, terms, workers=workers,
                                     cluster=cluster, on_result=on_result, report=report)
        try:
            for result in results:
                write_outputs(spec, result)
                written.add(result.index)
        finally:
            results.close()  # type: ignore[attr-defined]
    except ExecutionError as exc:
        bar.close()
        # Keep what did finish, and say what happened to every subtask.
        for outcome in exc.outcomes:
            if outcome.ok and outcome.index not in written:
                write_outputs(spec, outcome)
        summary()
        for outcome in exc.outcomes:
            state = "ok" if outcome.ok else f"failed: {outcome.reason}"
            typer.echo(f"  {for_terminal(outcome.name)}: {for_terminal(state, 400)}", err=True)
        raise
    finally:
        bar.close()
    summary()


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's UsageError: typer >= 0.24 bundles its own click, older typer uses click."""
    types: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import UsageError
    except ImportError:
        pass
    else:
        types.append(UsageError)
    try:
        from click.exceptions import UsageError as ClickUsageError
    except ImportError:
        pass
    else:
        types.append(ClickUsageError)
    return tuple(types)


def main(argv: list[str] | None = None) -> None:
    """The ``gwasm`` console script."""
    try:
        code = app(args=argv, prog_name="gwasm", standalone_mode=False)
    except _usage_error_types() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # prints the help
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            _error(f"{exc.format_message()}{hint}")  # type: ignore[attr-defined]
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted")
        code = Interrupted.exit_code
    except GfliteError as exc:
        _error(str(exc))
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
