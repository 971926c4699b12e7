"""Turning a bench report into the table's text cells and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plots import new_figure, save_png

COLUMNS = ("workload", "backend", "size", "first call", "median", "IQR/med", "x loops", "x numpy", "rate",
           "% limit", "note")
# The default table: what fits an 80-column terminal. Sizes, first calls, spread and notes are in
# --wide and the JSON; failures and extrapolations are listed under the table.
NARROW = ("workload", "backend", "median", "x loops", "x numpy", "rate", "% limit")


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    size = abs(seconds)  # a difference of times can be negative
    unit, scale = ("s", 1.0) if size >= 1.0 else ("ms", 1e-3) if size >= 1e-3 else ("us", 1e-6)
    value = seconds / scale
    return f"{value:.3g} {unit}" if abs(value) < 1000 else f"{value:,.0f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One tuple of cells per result, in the order of :data:`COLUMNS`."""
    out: list[tuple[str, ...]] = []
    described = report["workloads"]
    for r in report["results"]:
        size = described[r["workload"]]["describe"]
        note = ""
        if r["error"]:
            note = f"FAILED: {r['error']}"
        elif r["extrapolation"] != 1.0:
            note = f"extrapolated from {_measured(r)}"
        elif _over_copy_mb(r):
            note = f"over the copy limit ({_over_copy_mb(r):.3g} MB a call): see under the table"
        if r["unit"] == "overhead":
            rate = "-" if r["overhead_us"] is None else f"{r['overhead_us']:+.2f} us/op"
        else:
            rate = "-" if r["rate"] is None else f"{r['rate']:.3g} {r['rate_unit']}"
        share = "-" if r["share_of_limit"] is None else f"{100 * r['share_of_limit']:.3g} %"
        iqr = "-" if r["q1_s"] is None else f"{100 * (r['q3_s'] - r['q1_s']) / r['median_s']:.2g} %"
        out.append((r["workload"], r["backend"], size, fmt_time(r["first_call_s"]), fmt_time(r["median_s"]), iqr,
                    fmt_ratio(r["speedup_vs_loops"]), fmt_ratio(r["speedup_vs_numpy"]), rate, share, note))
    return out


def narrow_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """The :data:`NARROW` cells of :func:`rows`; a failed row says FAILED in its median."""
    picks = [COLUMNS.index(c) for c in NARROW]
    median = NARROW.index("median")
    out = []
    for r, cells in zip(report["results"], rows(report)):
        narrow = [cells[i] for i in picks]
        if r["error"]:
            narrow[median] = "FAILED"
        out.append(tuple(narrow))
    return out


def footnotes(report: dict[str, Any]) -> list[str]:
    """Under the narrow table: each workload's size, where loops ran smaller, and every failure."""
    described = report["workloads"]
    shown = dict.fromkeys(r["workload"] for r in report["results"])
    lines = ["sizes: " + "; ".join(f"{w} {described[w]['describe']}" for w in shown)] if shown else []
    scaled = [f"{r['workload']} from {_measured(r)}" for r in report["results"]
              if not r["error"] and r["extrapolation"] != 1.0]
    if scaled:
        lines.append("loops ran smaller and its times are scaled linearly: " + "; ".join(scaled))
    over = [f"{r['workload']} on {r['backend']} ({_over_copy_mb(r):.3g} MB a call)" for r in report["results"]
            if _over_copy_mb(r)]
    if over:
        lines.append("over 100 % of the copy limit (one copy of arrays larger than the caches, on one CPU thread): a "
                     "row can go faster when it uses several cores, mostly reads (a copy also writes) or keeps its "
                     "data in the caches: " + "; ".join(over))
    lines += [f"FAILED {r['workload']} on {r['backend']}: {r['error']}" for r in report["results"] if r["error"]]
    return lines


def _over_copy_mb(row: dict[str, Any]) -> float | None:
    """The megabytes a copy-bound row moves per call, when it beat the copy limit."""
    if row["error"] or not (row["share_of_limit"] or 0) > 1 or not row["median_s"]:
        return None
    if row["unit"] == "byte":
        return row["rate"] * row["median_s"] * 1e3  # GB/s x s
    return row["min_bytes"] / 1e6 if row.get("bound") == "copy" and row.get("min_bytes") else None


def _measured(row: dict[str, Any]) -> str:
    """The size parameters the loops backend ran at, where they differ from the reported size."""
    return " ".join(f"{k}={v:,}" for k, v in row["measured_size"].items() if row["size"].get(k) != v)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The machine and its limits, one fact a line, for above the table."""
    system = report["system"]
    cpu = system["cpu"]
    lines = [f"CPU: {cpu['model']}, {cpu['usable_cores']} usable cores; dtype {report['dtype']}, "
             f"profile {report['profile']}, {report['threads']} threads"]
    lines += [f"BLAS: {pool['library']} {pool['version']}, kernel {pool['kernel']}, {pool['threads']} threads"
              for pool in system["thread_pools"] if pool["api"] == "blas"]
    for where, lim in report["limits"].items():
        if isinstance(lim, dict):
            lines.append(f"limit ({where}): GEMM {lim['gemm_gflops']:.3g} GFLOP/s ({lim['dtype']}, n={lim['gemm_n']}), "
                         f"copy {lim['copy_gbps']:.3g} GB/s (read + write)")
    peer = report["peer"]
    if peer["available"]:
        lines.append(f"peer: PyTorch {peer['version']} (CPU, {peer['threads']} threads)")
    isolation = report.get("isolation", {})
    if isolation.get("mode") == "process":
        lines.append("isolation: each backend timed in a fresh process of its own, one after the other")
    elif isolation.get("mode") == "in-process":
        lines.append("isolation: none (--in-process): every backend timed in one process; rows interfere")
    return lines


def speedup_figure(report: dict[str, Any]) -> Any:
    """A bar chart of each backend's speed-up per workload, on a log scale, each bar labelled with
    its value: over loops when loops ran, else over NumPy."""
    results = [r for r in report["results"] if r["unit"] != "overhead" and r["median_s"] is not None]
    over_loops = any(r["speedup_vs_loops"] is not None for r in results)
    key = "speedup_vs_loops" if over_loops else "speedup_vs_numpy"
    baseline = "loops" if over_loops else "numpy"
    workloads = list(dict.fromkeys(r["workload"] for r in results))
    backends = list(dict.fromkeys(r["backend"] for r in results))
    fig = new_figure(max(7.0, 0.35 * len(workloads) * len(backends) + 2), 5.5)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(backends))
    for i, backend in enumerate(backends):
        xs, ys = [], []
        for j, workload in enumerate(workloads):
            value = next((r[key] for r in results if r["workload"] == workload and r["backend"] == backend), None)
            if value:
                xs.append(j + (i - (len(backends) - 1) / 2) * width)
                ys.append(value)
        bars = ax.bar(xs, ys, width=width, label=backend)
        ax.bar_label(bars, labels=[fmt_ratio(y) for y in ys], rotation=90, padding=2, fontsize=7)
    ax.set_yscale("log")
    ax.margins(y=0.25)  # room above the tallest bar for its label
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(workloads)), workloads, rotation=30, ha="right")
    ax.set_xlabel(f"workload (sizes in the table; {report['dtype']})")
    ax.set_ylabel(f"speed-up over {baseline} (x, log scale; 1x = {baseline})")
    extrapolated = any(r["extrapolation"] != 1.0 for r in results)
    ax.set_title(f"dlaccel bench: speed-up over the {baseline} backend ({report['dtype']}, {report['profile']})"
                 + ("\nloops times partly extrapolated from smaller sizes, see the table" if extrapolated else ""))
    ax.legend(title="backend")
    return fig


def plot_speedups(report: dict[str, Any], path: Path) -> None:
    """:func:`speedup_figure` as a PNG."""
    save_png(speedup_figure(report), path, "chart", dpi=110)
