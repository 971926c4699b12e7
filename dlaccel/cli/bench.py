"""``dlaccel bench``: parse the options, run :func:`dlaccel.bench.run`, print the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from .._files import atomic_write
from ..bench import report as rep
from ..bench.runner import ROW_TIMEOUT_S, resolve_targets, run
from ..bench.workloads import PROFILES, WORKLOADS, select_workloads
from ._common import CommandError, check_output_path, console, handle_errors, require_matplotlib, split_names

BENCH_HELP = f"""Run the workloads on every available backend and PyTorch, print the table.

Each backend (and PyTorch) is timed in a fresh process of its own, one after the other, so that
one runtime's thread pool cannot slow another's rows; this process measures the machine's limits
and prints the table. Each result is checked against the NumPy backend before it is timed; the
first call (Numba's compilation or cache load, CuPy's kernel build) is reported apart from the warm
median. Rates are GFLOP/s or GB/s (bytes read + written), shares are of this machine's limits
measured in the same run.

\b
Workloads: {", ".join(WORKLOADS)}
distributed (alone): the data-parallel fit on a LocalCluster: overhead, scaling, peer, memory
Groups: elementwise (the six activations), deep (both DeepNN steps)

\b
JSON (--json): schema "dlaccel-bench/1"; created, profile, dtype, threads; isolation (mode
"process" or "in-process", parent_pid, row_timeout_s, workers per backend: pid, pids, exit_codes,
blas_threads, numba_threads, thread_pools, wall_s, torch_version/torch_threads for the peer);
system (versions, platform, cpu, thread_pools with BLAS library/kernel/threads,
thread_pools_reason, numba_threads, env, backends, gpus, gpu_reason); limits.host (and .device,
with device_backends naming the backends held to it): dtype, gemm_n, gemm_gflops, copy_bytes,
copy_gbps; peer (name, available, version, threads); workloads (title, group, unit, size,
describe); results[] with workload, group, backend, unit, size, measured_size, extrapolation,
first_call_s, median_s, q1_s, q3_s, min_s, max_s, samples, calls_per_sample, check (passed,
max_rel_error, tolerance, message), rate, rate_unit, limit, share_of_limit, speedup_vs_loops,
speedup_vs_numpy, overhead_us, error, pid; notes; wall_s.
"""


@click.command(help=BENCH_HELP)
@click.option("--backends", "-b", metavar="NAMES",
              help="Comma-separated backends, 'torch' for the PyTorch peer (default: every available one + torch).")
@click.option("--workloads", "-w", metavar="NAMES", help="Comma-separated workloads or groups (default: all).")
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer samples (well under 90 s on 2 cores).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the full report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write a PNG bar chart of the speed-ups (log scale).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--repeat", type=click.IntRange(min=1),
              help="Fewest timed samples per row (default 3; fast rows take more).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=ROW_TIMEOUT_S,
              show_default=True, help="Seconds a backend's process may spend on one row before it is killed "
              "and the row reported as timed out.")
@click.option("--wide", is_flag=True,
              help="Every column in the table (size, first call, spread, notes); the default fits 80 columns.")
@click.option("--in-process", is_flag=True,
              help="Time every backend in this one process (rows then interfere through the runtimes' thread "
                   "pools; for debugging).")
@click.option("--workers", metavar="COUNTS",
              help="With -w distributed: comma-separated LocalCluster sizes to measure (default 1,2).")
@click.option("--profile", type=click.Choice(PROFILES), hidden=True, help="Size profile; 'tiny' is for tests.")
@handle_errors
def bench(backends: str | None, workloads: str | None, quick: bool, json_path: Path | None, plot_path: Path | None,
          dtype: str, repeat: int | None, timeout_s: float, wide: bool, in_process: bool, workers: str | None,
          profile: str | None) -> None:
    check_output_path(json_path, "--json", "JSON report")
    check_output_path(plot_path, "--plot", "chart")
    if plot_path is not None:
        require_matplotlib("--plot")
    names = split_names(workloads)
    if names and "distributed" in names:
        if names != ["distributed"] or backends:
            raise CommandError("-w distributed is a benchmark of its own (a LocalCluster, its overhead and "
                               "scaling); run it alone, without --backends")
        from ..bench.distributed import format_table, run_distributed

        sized = {} if workers is None else {"workers": _worker_counts(workers)}  # else run_distributed's default
        with Console(stderr=True, markup=False).status("starting") as status:
            report = run_distributed(profile or ("quick" if quick else "full"), json_path=json_path,
                                     plot_path=plot_path, progress=status.update, **sized)
        click.echo(format_table(report))
        return
    if workers is not None:
        raise CommandError("--workers sizes the LocalCluster of -w distributed; the other workloads run in this "
                           "machine's processes")
    chosen = select_workloads(names)
    # Unknown or unavailable names fail here, before any work; run() takes these targets as they are.
    targets = resolve_targets(split_names(backends))
    profile = profile or ("quick" if quick else "full")
    out, status_console = console(), Console(stderr=True, markup=False)
    with status_console.status("starting") as status:
        result = run(targets, chosen, profile, dtype, repeat, progress=status.update, isolate=not in_process,
                     timeout_s=timeout_s)
    show_bench(result, out, wide)
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")), "JSON report")
        out.print(f"JSON written to {json_path}")
    failed = [r for r in result["results"] if r["error"]]
    problems = [f"{len(failed)} row(s) failed, see the table"] if failed else []
    if not result["results"]:  # every target dropped out (PyTorch failed to import in its child)
        problems.append("nothing was timed: " + ("; ".join(result["notes"]) or "no backend ran"))
    if plot_path is not None:
        try:
            rep.plot_speedups(result, plot_path)
            out.print(f"chart written to {plot_path}")
        except Exception as exc:  # the table and the JSON are out already; say what the chart hit
            problems.append(f"the chart could not be written to {plot_path}: {type(exc).__name__}: {exc}")
    if problems:
        raise CommandError("; ".join(problems))


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(w) for w in split_names(text) or []]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise CommandError(f"--workers must be comma-separated worker counts of 1 or more, such as 1,2; got {text!r}")
    return counts


def show_bench(result: dict[str, Any], console: Console, wide: bool = False) -> None:
    for line in rep.summary_lines(result):
        console.print(line)
    columns, cells = (rep.COLUMNS, rep.rows(result)) if wide else (rep.NARROW, rep.narrow_rows(result))
    # Light rules and single gaps: the narrow table fits 80 columns with room for long backend names.
    table = Table(title="dlaccel bench", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for column in columns:
        words = column in ("size", "note")  # wrap at spaces; numbers are never split
        table.add_column(column, justify="left" if column in ("workload", "backend", "size", "note") else "right",
                         no_wrap=not words, overflow="fold" if words else "ellipsis")
    previous = None
    for row in cells:
        if previous is not None and row[0] != previous:
            table.add_section()
        table.add_row(*row)
        previous = row[0]
    console.print(table)
    if not wide:
        for line in rep.footnotes(result):
            console.print(line)
    console.print("x loops, x numpy: speed-up over that backend's median in this run; "
                  + ("loops times marked 'extrapolated' scale linearly from the smaller size they ran at; "
                     "IQR/med: spread" if wide else "--wide adds sizes, first calls (compilation), spread, notes"))
    for note in result["notes"]:
        console.print(f"note: {note}")
    console.print(f"finished in {result['wall_s']:.1f} s")
