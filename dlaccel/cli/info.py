"""``dlaccel info``: versions, backends, BLAS and threads, CPU and GPU."""

from __future__ import annotations

import json

import click
from rich.table import Table

from .. import sysinfo
from ._common import console, handle_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
@handle_errors
def info(as_json: bool) -> None:
    """Versions, every backend (available or why not), BLAS kernel and threads, CPU and GPU."""
    system = sysinfo.collect()
    if as_json:
        click.echo(json.dumps(system, indent=2))
        return
    out = console()
    versions = Table(title="versions", show_header=False)
    for name, version in system["versions"].items():
        versions.add_row(name, version or "not installed")
    out.print(versions)
    backends = Table(title="backends")
    for column in ("backend", "available", "why not"):
        backends.add_column(column)
    for name, state in system["backends"].items():
        backends.add_row(name, "yes" if state["available"] else "no", state["reason"] or "")
    out.print(backends)
    pools = Table(title="thread pools (threadpoolctl)")
    for column in ("api", "library", "version", "kernel", "threads"):
        pools.add_column(column)
    for pool in system["thread_pools"]:
        pools.add_row(*(str(pool[k]) for k in ("api", "library", "version", "kernel", "threads")))
    out.print(pools)
    if system["thread_pools_reason"]:
        out.print(system["thread_pools_reason"])
    cpu = system["cpu"]
    out.print(f"CPU: {cpu['model']} ({cpu['machine']}), {cpu['logical_cores']} logical cores, "
                  f"{cpu['usable_cores']} usable by this process")
    if system["numba_threads"] is not None:
        out.print(f"Numba threads: {system['numba_threads']}")
    for gpu in system["gpus"]:
        memory = f"{gpu['memory_bytes'] / 2**30:.1f} GiB" if gpu["memory_bytes"] else "memory unknown"
        cores = f", compute capability {gpu['compute_capability']}, {gpu['sms']} SMs" if gpu.get("sms") else ""
        out.print(f"GPU {gpu['index']}: {gpu['name']}, {memory}{cores} (via {gpu['source']})")
    if not system["gpus"]:
        out.print(f"GPU: none found ({system['gpu_reason'] or 'no CUDA device'})")
    for key, value in system["env"].items():
        out.print(f"environment: {key}={value}")
