#!/usr/bin/env python3
"""One-shot check of the cupy backend on a GPU machine, in under 5 minutes.

    python3 benchmarks/gpu_check.py            # from the repository root; dlaccel need not be installed
    OUT=/some/dir python3 benchmarks/gpu_check.py   # also writes $OUT/gpu_check.json and $OUT/pytest.log

Sections, each in a child process with a time limit inside a 285 s budget (a sticky CUDA error or a
hang costs that section only); rows are `dlaccel bench`'s, checked against NumPy before timing:
  env          device, driver and library versions; whether the cupy backend is usable at all
  kernels      elementwise and training-step rows, full size, float32, on cupy and plain CuPy (no
               fused kernel): time, rate, share of the device's copy or GEMM limit, fusing's gain
  training     one DeepNN step, NETS at m = 8192, float32, softmax, against NumPy and PyTorch CUDA
               eager (autograd + SGD), both in full fp32 (TF32 off), like with like
  coldstart    kernel compilation into an empty CuPy cache, then loading from the filled cache
  dask-cuda    when dask_cuda is installed: DeepNN [784,256,10] fitted through a LocalCUDACluster
               (one worker per GPU) against the same fit in one process
  tests        pytest on tests/ for everything GPU-marked or cupy-parametrized: the op tests, every
               bench workload and DeepNN fits through every kernel (outputs poisoned with NaN) against NumPy
A short table comes last. Exit status: 0 when every section passed, 1 when any section failed or
found wrong numbers, 2 when there was no usable GPU (the table says GPU CHECK NOT RUN and why).

Every process that runs kernels imports this module first (the sections, bench's children, the dask
workers by preload, pytest by ``-p gpu_check``): without an install it maps kernels/ to
``dlaccel.kernels``, as setuptools does, so the library finds its CUDA sources.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUDGET_S, TESTS_RESERVE_S = 285.0, 60.0  # the whole run; what the sections before "tests" leave it
LIMITS = {"env": 60, "kernels": 90, "training": 120, "coldstart": 60, "dask-cuda": 90, "tests": 150}
# In this order, the rest only when env found the GPU usable; coldstart into an empty, then the filled cache.
PLAN = ["env", "kernels", "training", "coldstart_cold", "coldstart_warm", "dask-cuda", "tests"]
ROW_TIMEOUT_S = 45.0  # bench kills a row's child after this long without progress
# GPU-marked and cupy-parametrized tests; the emulator and compiler checks ran on CPU machines
# already, and test_gpu_check.py is this script's dry run.
TESTS = "(cupy or gpu) and not emulated and not nvcc and not nvrtc and not gpu_check"
NETS = ([784, 1024, 1024, 10], [4096, 4096, 4096, 10])
KERNEL_ROWS = [*(f"{a}_{d}" for a in ("sigmoid", "tanh", "relu") for d in ("fwd", "bwd")), "dot", "logreg", "deep",
               "deep_course"]
ISOLATE = True  # bench rows in bench's child processes; the CPU dry run times them in its own process


def setup_imports() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if importlib.util.find_spec("dlaccel.kernels") is None:
        import dlaccel

        spec = importlib.util.spec_from_file_location(
            "dlaccel.kernels", REPO / "kernels" / "__init__.py", submodule_search_locations=[str(REPO / "kernels")]
        )
        dlaccel.kernels = sys.modules["dlaccel.kernels"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dlaccel.kernels)


setup_imports()

import numpy as np  # noqa: E402

import dlaccel  # noqa: E402
from dlaccel import bench, sysinfo  # noqa: E402
from dlaccel._files import atomic_write  # noqa: E402
from dlaccel.backends._cuda import KERNEL_FILES, kernel_names  # noqa: E402
from dlaccel.backends.cupy_gpu import CupyBackend  # noqa: E402
from dlaccel.bench import report  # noqa: E402
from dlaccel.bench.report import fmt_ratio, fmt_time  # noqa: E402
from dlaccel.bench.workloads import torch_training_case  # noqa: E402
from dlaccel.distributed import ShardedData, build_from_data  # noqa: E402


class Cupy(CupyBackend):
    """The cupy backend as a class of this module: bench's children rebuild it by name, so they
    import this module, and so find the kernels without an install."""


class UnfusedCupy(Cupy):
    """Plain CuPy: every op falls back to the NumPy backend's code on CuPy arrays."""

    name = "cupy-unfused"
    _fast = staticmethod(lambda *arrays: False)


class Record(dict):
    """A section's results, rewritten to its JSON file at every change (a child that runs out of
    time still hands back what it found): ``failed`` lists wrong numbers, ``errors`` exceptions."""

    def __init__(self, path: str | None):
        super().__init__(errors=[], failed=[], lines=[])
        self.path = path

    def put(self, **items: Any) -> None:
        self.update(items)
        if self.path:  # whole or not at all: the parent may kill this child at any moment
            atomic_write(self.path, lambda f: f.write(json.dumps(self, indent=1, default=str).encode()))

    def add(self, key: str, *items: Any) -> None:
        self.put(**{key: [*self.get(key, []), *items]})

    def note(self, key: str, text: str) -> None:
        print(f"  {key.upper()}: {text}", flush=True)
        if key == "errors":
            traceback.print_exc()
        self.add(key, text)

    def check(self, what: str, check: dict) -> dict:
        """``check`` (from ``bench.compare_outputs``), noted as failed unless it passed."""
        if not check["passed"]:
            self.note("failed", f"{what}: {check['message']}")
        return check


def section_env(rec: Record, quick: bool) -> None:
    info, (torch, torch_note) = dlaccel.available_backends()["cupy"], bench.load_torch(1)
    rec.put(**sysinfo.package_versions())  # installed; torch's then says whether it imported
    rec.put(cupy_available=info["available"], cupy_reason=info["reason"], CUPY_TF32=os.environ.get("CUPY_TF32"),
            torch_note=torch_note,
            torch=getattr(torch, "__version__", None), torch_cuda=bool(torch and torch.cuda.is_available()))
    if info["available"]:
        import cupy

        rt = cupy.cuda.runtime
        gpu = sysinfo.gpus()[0][rt.getDevice()]
        rec.put(device=gpu["name"], sms=gpu["sms"], memory_gib=round(gpu["memory_bytes"] / 2**30, 1),
                compute_capability=gpu["compute_capability"], cupy=cupy.__version__,
                cuda_runtime=rt.runtimeGetVersion(), cuda_driver=rt.driverGetVersion(),
                nvrtc=".".join(map(str, cupy.cuda.nvrtc.getVersion())))


def fitted(model: Any) -> dict[str, np.ndarray]:
    return {**model.parameters, "costs": np.array([c for _, c in model.costs])}


def section_kernels(rec: Record, quick: bool) -> None:
    """``dlaccel bench``'s rows on cupy and plain CuPy, each checked against NumPy, then timed."""
    found = bench.run([Cupy(), UnfusedCupy()], [bench.WORKLOADS[n] for n in KERNEL_ROWS], "tiny" if quick else "full",
                      "float32", progress=lambda s: print(f"  {s}", flush=True), isolate=ISOLATE,
                      timeout_s=ROW_TIMEOUT_S)
    rec.put(report={k: found[k] for k in ("workloads", "results", "limits", "notes")})
    for r in found["results"]:
        if r["error"]:
            rec.note("failed", f"{r['workload']} on {r['backend']}: {r['error']}")
    limit = found["limits"].get("device") or {}
    plain = {r["workload"]: r["median_s"] for r in found["results"] if r["backend"] == UnfusedCupy.name}
    lines = [f"device limits (float32): copy {limit.get('copy_gbps', 0):.0f} GB/s (read + write), GEMM "
             f"{limit.get('gemm_gflops', 0):.0f} GFLOP/s; x plain: plain CuPy's time over this row's",
             f"{'workload':12s} {'size':>26s} {'backend':>13s} {'median':>10s} {'rate':>16s} {'% limit':>8s} x plain"]
    for r, cells in zip(found["results"], report.rows(found)):  # bench's cells, by its column names
        c = dict(zip(report.COLUMNS, cells))
        base = plain.get(r["workload"]) if r["backend"] != UnfusedCupy.name else None
        x_plain = fmt_ratio(base / r["median_s"]) if base and r["median_s"] else "-"
        median = "FAILED" if r["error"] else c["median"]
        lines.append(f"{r['workload']:12s} {c['size']:>26s} {r['backend']:>13s} {median:>10s} {c['rate']:>16s} "
                     f"{c['% limit']:>8s} {x_plain:>7s}")
    rec.put(lines=lines)


def section_training(rec: Record, quick: bool) -> None:
    f32, deep, be = np.dtype(np.float32), bench.WORKLOADS["deep"], Cupy()
    torch, note = bench.load_torch(1)
    if torch is not None and not torch.cuda.is_available():
        torch, note = None, "PyTorch sees no CUDA device, so there is no peer"
    elif torch is not None:  # full fp32, like cupy's GEMMs
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    limits = bench.measure_limits("tiny" if quick else "full", f32, be.xp, be.synchronize)
    rec.put(limits=limits, items=[], lines=[f"{'training step (float32, fp32 GEMMs)':38s} {'cupy':>10s} {'torch':>10s} "
                                             f"{'cupy/torch':>10s} {'TFLOP/s':>8s} {'% roofline':>10s}"])
    for layers in ([8, 4, 4, 3],) if quick else NETS:
        size, net = {"layers": tuple(layers), "m": 64 if quick else 8192}, "x".join(map(str, layers))
        # Roofline: no faster than its GEMMs at the GEMM rate, nor than its bytes at the copy bandwidth.
        floor_s = max(deep.gemm_flops(size, f32) / (limits["gemm_gflops"] * 1e9),
                      deep.min_bytes(size, f32) / (limits["copy_gbps"] * 1e9))
        item: dict[str, Any] = {"net": net, "m": size["m"], "flop": deep.work(size, f32), "floor_s": floor_s}
        try:
            data = deep.data(size, f32)
            ref = deep.build(dlaccel.get_backend("numpy"), size, data)
            ref_out = ref.outputs(bench.first_call(ref)[1])
            for name in ("cupy", "torch") if torch is not None else ("cupy",):
                case = (deep.build(be, size, data) if name == "cupy"
                        else torch_training_case(torch, layers, "relu", data, "cuda"))
                check = bench.compare_outputs(case.outputs(bench.first_call(case)[1]), ref_out, f32)
                timing = bench.measure(case, 3, 0.2 if quick else 1.0)
                item[name] = {"median_s": timing.median_s, "min_s": min(timing.samples_s),
                              "check": rec.check(f"training {net} on {name} vs NumPy", check)}
        except Exception as exc:
            rec.note("errors", f"training {net}: {type(exc).__name__}: {exc}")
        cupy_s, torch_s = item.get("cupy", {}).get("median_s"), item.get("torch", {}).get("median_s")
        rec.add("items", item)
        rec.add("lines", f"{net + ' m=' + str(item['m']):38s} {fmt_time(cupy_s):>10s} {fmt_time(torch_s):>10s} "
                f"{fmt_ratio(cupy_s / torch_s) if cupy_s and torch_s else '-':>10s} "
                f"{item['flop'] / cupy_s / 1e12 if cupy_s else 0:8.1f} {100 * floor_s / (cupy_s or 1):9.0f}%")
    rec.add("lines", *([f"torch: {note}"] if note else []))


def section_coldstart(rec: Record, quick: bool) -> None:
    """Time to first use of every float32 kernel in this process (CUPY_CACHE_DIR decides cold/warm)."""
    cache, t0 = os.environ.get("CUPY_CACHE_DIR"), time.perf_counter()
    state = "default" if cache is None else "filled" if any(Path(cache).iterdir()) else "empty"
    import cupy

    cupy.zeros(1).sum()  # CUDA context and CuPy's own first kernels, kept out of the kernel number
    cupy.cuda.Device().synchronize()
    be, t1 = Cupy(), time.perf_counter()
    names = [(f, name) for f in KERNEL_FILES for name in kernel_names(f)]
    for filename, name in names:
        be._function(filename, name, np.dtype(np.float32))
    cupy.cuda.Device().synchronize()
    t2 = time.perf_counter()
    rec.put(context_s=t1 - t0, kernels_s=t2 - t1, kernels=len(names), modules=len(be._kernels._modules), cache=state,
            lines=[f"kernel first use, {state} CuPy disk cache (new process): {len(names)} kernels in "
                   f"{fmt_time(t2 - t1)}; CUDA context {fmt_time(t1 - t0)}"])


def section_dask_cuda(rec: Record, quick: bool, make_cluster: Any = None) -> None:
    """DeepNN [784,256,10] on a dask array through GPU workers (each moves its shards to its GPU once;
    parameters and gradient sums cross) against the same fit in this process."""
    if make_cluster is None:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            reason = f"dask_cuda is not importable ({exc}); pip install dask-cuda"
            return rec.put(skipped=reason, lines=[f"dask-cuda: skipped: {reason}"])

        def make_cluster() -> Any:  # one worker per GPU; each imports this module first (the kernels)
            return LocalCUDACluster(preload=["gpu_check"], dashboard_address=":0")

    import dask.array as da
    from distributed import Client

    def held(dask_worker: Any) -> list[bool]:  # per shard on this worker: moved to its GPU (once)?
        import cupy

        return [isinstance(v[0], cupy.ndarray) for k, v in dask_worker.data.items()
                if str(k).startswith("dlaccel-shard")]

    m, iterations = (256, 3) if quick else (65536, 20)
    X = da.random.RandomState(0).standard_normal((784, m), chunks=(784, m // 4)).astype(np.float32)
    Y = da.random.RandomState(1).randint(0, 10, size=(1, m), chunks=(1, m // 4))
    on_host = (X.compute(scheduler="threads"), Y.compute(scheduler="threads"))
    models, per_iteration = [], {}
    with make_cluster() as cluster, Client(cluster) as client:
        rec.put(workers=len(client.scheduler_info(n_workers=-1)["workers"]))
        for name, data, where in (("in-process", on_host, {}), ("dask-cuda", (X, Y), {"client": client})):
            models.append(dlaccel.DeepNN([784, 256, 10], backend="cupy", dtype="float32", seed=0))
            models[-1].fit(*data, learning_rate=0.1, num_iterations=1, **where)  # kernels compiled, workers warm
            t0 = time.perf_counter()
            models[-1].fit(*data, learning_rate=0.1, num_iterations=iterations, cost_every=1, **where)
            per_iteration[name] = (time.perf_counter() - t0) / iterations
        shards = ShardedData(client, models[1], *build_from_data(models[1], X, Y, client))
        try:
            on_gpu = [ok for found in client.run(held).values() for ok in found]
        finally:
            shards.release()
    check = bench.compare_outputs(fitted(models[1]), fitted(models[0]), np.float32)
    if not on_gpu or not all(on_gpu):
        rec.note("failed", f"dask-cuda: {sum(on_gpu)} of {len(on_gpu)} shards held as cupy arrays on the workers")
    rec.put(m=m, iterations=iterations, s_per_iteration=per_iteration, check=check, shards_on_gpu=on_gpu, lines=[
        f"dask-cuda: {rec['workers']} GPU worker(s), DeepNN [784,256,10] m={m}: {fmt_time(per_iteration['dask-cuda'])}"
        f"/iteration vs {fmt_time(per_iteration['in-process'])} in one process; max rel error "
        f"{check['max_rel_error']:.2g}"])
    if not check["passed"] or check["max_rel_error"] > 1e-4:  # sums reordered only: far inside float32's 1e-3
        rec.note("failed", f"dask-cuda fit vs in-process: max rel error {check['max_rel_error']} ({check['message']})")


def section_tests(rec: Record, quick: bool) -> None:
    """pytest, its output in pytest.log (where the table says, should the section run out of time)."""
    log = Path(os.environ.get("OUT") or tempfile.mkdtemp()) / "pytest.log"
    rec.put(log=str(log), lines=[f"pytest (gpu/cupy): log in {log}"])
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "pytest", "-p", "gpu_check", str(REPO / "tests"), "-q", "-p",
                                "no:cacheprovider", "-k", TESTS, "--continue-on-collection-errors"],
                               stdout=out, stderr=subprocess.STDOUT)
    lines = log.read_text(errors="replace").splitlines()
    print("\n".join(lines[-25:]), flush=True)
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|error)", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    rec.put(counts=counts, lines=[f"pytest (gpu/cupy): {counts}"],
            failed=[line for line in lines if line.startswith(("FAILED ", "ERROR "))],
            errors=[f"pytest exited with {code}"] if code else [])


SECTIONS = {"env": section_env, "kernels": section_kernels,
            "training": section_training, "coldstart": section_coldstart, "dask-cuda": section_dask_cuda,
            "tests": section_tests}


def run_section(name: str, timeout: float, quick: bool, env: dict | None = None) -> dict:
    """Run a section in a child in a session of its own (at its end or its time limit, everything
    it started goes); the child hands back its Record through a JSON file."""
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, str(HERE / "gpu_check.py"), "--section", name, "--result", path]
    proc = subprocess.Popen([*cmd, "--quick"] if quick else cmd, cwd=REPO, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        status = "ok" if proc.wait(timeout=timeout) == 0 else f"child exited with {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    data = json.loads(Path(path).read_text() or "{}")  # empty: the child died before its first result
    Path(path).unlink(missing_ok=True)
    if data.get("errors") and status == "ok":
        status = f"{len(data['errors'])} error(s)"
    return {**data, "status": status}


def table(results: dict[str, dict]) -> str:
    env = results.get("env", {})
    lines = ["", "=" * 100, "dlaccel gpu_check summary", "=" * 100,
             f"device: {env.get('device', '-')}  SMs {env.get('sms', '-')}  cupy {env.get('cupy') or '-'}  "
             f"torch {env.get('torch') or '-'}  CUPY_TF32={env.get('CUPY_TF32')}"]
    if not env.get("cupy_available"):
        lines.append(f"GPU CHECK NOT RUN: cupy backend unavailable: {env.get('cupy_reason') or env.get('errors')}")
    lines.append("sections: " + ", ".join(f"{k}={v.get('status')} ({v.get('wall_s', 0):.0f}s)"
                                          for k, v in results.items()))
    for res in results.values():
        lines += res.get("lines", [])
    for name, res in results.items():
        lines += [f"FAILED in {name}: {what[:200]}" for what in res.get("failed", [])[:10]]
        lines += [f"error in {name}: {err[:200]}" for err in res.get("errors", [])[:3]]
    return "\n".join([*lines, "=" * 100])


def verdict(results: dict[str, dict]) -> tuple[int, list[str]]:
    """The exit status (see the module docstring) and the sections with problems."""
    bad = sorted(k for k, v in results.items() if v.get("status") != "ok" or v.get("failed"))
    return (1, bad) if bad else (0 if results.get("env", {}).get("cupy_available") else 2, [])  # no GPU: no pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every code path")
    args = parser.parse_args()
    if args.section:
        rec = Record(args.result)
        try:
            SECTIONS[args.section](rec, args.quick)
        except BaseException as exc:  # report, never raise: the parent reads the file
            rec.note("errors", f"{args.section}: {type(exc).__name__}: {exc}")
        return 0

    start = time.perf_counter()
    # Every child finds dlaccel and this module (pytest's -p, dask's preload) without an install.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(HERE), os.environ.get("PYTHONPATH")) if p)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
    cache = {"CUPY_CACHE_DIR": tempfile.mkdtemp(prefix="dlaccel_cupy_cache_")}
    results: dict[str, dict] = {}
    for key in PLAN:
        if key != "env" and not results["env"].get("cupy_available"):
            break
        section, t0 = key.split("_")[0], time.perf_counter()
        limit = min(LIMITS[section], BUDGET_S - (t0 - start) - (0 if section == "tests" else TESTS_RESERVE_S))
        if limit < 10:
            results[key] = {"status": "skipped: out of time budget", "wall_s": 0.0}
            continue
        print(f"== {key} (limit {limit:.0f} s)", flush=True)
        try:
            results[key] = run_section(section, limit, args.quick, cache if section == "coldstart" else None)
        except Exception as exc:  # the table must still come out
            traceback.print_exc()
            results[key] = {"status": f"failed to run: {type(exc).__name__}: {exc}"}
        results[key]["wall_s"] = time.perf_counter() - t0
    total_s = time.perf_counter() - start
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "gpu_check.json").write_text(
            json.dumps({**results, "total_s": total_s}, indent=1, default=str))
    print(table(results))
    print(f"total {total_s:.0f} s", flush=True)
    code, bad = verdict(results)
    if bad:
        print(f"gpu_check: problems in {', '.join(bad)}", flush=True)
    return code


if __name__ == "__main__":
    # Run as the module "gpu_check" (this file, by name, from its own directory), so that bench's
    # children and the dask workers can rebuild its classes and find its setup by that name.
    import gpu_check

    sys.exit(gpu_check.main())
