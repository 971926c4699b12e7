#!/usr/bin/env python3
"""One-shot check of the cupy backend on a GPU machine, in under 5 minutes.

    python3 benchmarks/gpu_check.py            # from the repository root; dlaccel need not be installed
    OUT=/some/dir python3 benchmarks/gpu_check.py   # also writes $OUT/gpu_check.json and $OUT/pytest.log

Sections, each in a child process with a time limit inside a 285 s budget (a sticky CUDA error or a
hang costs that section only); rows are `dlaccel bench`'s: its workloads, its check against NumPy
before timing, its roofline, its fresh process per backend.
  env          device, driver and library versions; whether the cupy backend is usable at all
  correctness  every bench workload on cupy with kernel outputs poisoned with NaN, checked elementwise
               against NumPy; short DeepNN fits (every hidden activation, both outputs and dtypes)
               against NumPy, so updates and costs over several iterations are checked too
  kernels      elementwise and training-step workloads at full size, float32, on cupy and on plain
               CuPy (the NumPy backend's code, no fused kernel): time, rate, share of the device's
               measured copy bandwidth or GEMM rate, and what fusing buys
  training     one step of DeepNN [784,1024,1024,10] and [4096,4096,4096,10], m = 8192, float32,
               softmax, checked against NumPy, against PyTorch CUDA eager (autograd + SGD) when
               installed; both in full fp32 (TF32 off), like with like
  coldstart    kernel compilation into an empty CuPy cache, then loading from the filled cache
  dask-cuda    when dask_cuda is installed: DeepNN [784,256,10] fitted on a dask array through a
               LocalCUDACluster (one worker per GPU) against the same fit in one process
  tests        pytest on tests/ for everything GPU-marked or cupy-parametrized (the op tests)
A short table comes last. Exit status: 0 when every section passed, 1 when any section failed or
found wrong numbers, 2 when there was no usable GPU (the table says GPU CHECK NOT RUN and why).

Without an install ``dlaccel.kernels`` (a setuptools package-dir mapping of kernels/) does not
exist: this module puts the repository root on sys.path and registers kernels/ under that name, so
the library reads its sources through importlib.resources as when installed. Every process that
runs kernels imports this module first: the sections' children, bench's children (they rebuild the
backend classes below by name), the dask workers (preload) and pytest (``-p gpu_check``).
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
LIMITS = {"env": 60, "correctness": 90, "kernels": 90, "training": 120, "coldstart": 60, "dask-cuda": 90, "tests": 150}
ROW_TIMEOUT_S = 45.0  # bench kills a row's child after this long without progress
# GPU-marked and cupy-parametrized tests; the emulator and compiler checks ran on CPU machines
# already, and test_gpu_check.py is this script's dry run.
TESTS = "(cupy or gpu) and not emulated and not nvcc and not nvrtc and not gpu_check"
NETS = ([784, 1024, 1024, 10], [4096, 4096, 4096, 10])
KERNEL_ROWS = [*(f"{a}_{d}" for a in ("sigmoid", "tanh", "relu") for d in ("fwd", "bwd")), "dot", "logreg", "deep",
               "deep_course"]
FITS = [("sigmoid", 1), ("tanh", 3), ("relu", 1), ("leaky_relu", 3), ("linear", 1)]  # hidden activation, n_y
ISOLATE = True  # bench rows in bench's child processes; the CPU dry run times them in its own process


def setup_imports() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    with contextlib.suppress(ModuleNotFoundError):
        if importlib.util.find_spec("dlaccel.kernels") is not None:
            return
    import dlaccel

    spec = importlib.util.spec_from_file_location(
        "dlaccel.kernels", REPO / "kernels" / "__init__.py", submodule_search_locations=[str(REPO / "kernels")]
    )
    dlaccel.kernels = sys.modules["dlaccel.kernels"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dlaccel.kernels)


setup_imports()

import numpy as np  # noqa: E402

import dlaccel  # noqa: E402
from dlaccel import bench  # noqa: E402
from dlaccel.backends.cupy_gpu import CupyBackend  # noqa: E402
from dlaccel.bench.report import fmt_ratio, fmt_time  # noqa: E402


class Cupy(CupyBackend):
    """The cupy backend as a class of this module: bench's children rebuild it by name, so they
    import this module, and so find the kernels without an install."""


class PoisonedCupy(Cupy):
    """Every kernel output starts as NaN, so an element a kernel fails to write fails the check."""

    def _empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.xp.full(shape, np.nan, dtype=dtype)


class UnfusedCupy(Cupy):
    """Plain CuPy: every op falls back to the NumPy backend's code on CuPy arrays."""

    name = "cupy-unfused"
    _fast = staticmethod(lambda *arrays: False)


class Record(dict):
    """A section's results, rewritten to its JSON file at every change (a child that runs out of
    time still hands back what it found): ``failed`` lists wrong numbers, ``errors`` exceptions."""

    def __init__(self, path: str | None):
        super().__init__(errors=[], failed=[])
        self.path = path

    def put(self, **items: Any) -> None:
        self.update(items)
        if self.path:
            Path(self.path).write_text(json.dumps(self, indent=1, default=str))

    def note(self, key: str, text: str) -> None:
        print(f"  {key.upper()}: {text}", flush=True)
        if key == "errors":
            traceback.print_exc()
        self.put(**{key: [*self[key], text]})


# -- sections (each runs in a child) ---------------------------------------------------------------


def section_env(rec: Record, quick: bool) -> None:
    info = dlaccel.available_backends()["cupy"]
    torch, torch_note = bench.load_torch(1)
    rec.put(python=sys.version.split()[0], numpy=np.__version__, cupy_available=info["available"],
            cupy_reason=info["reason"], CUPY_TF32=os.environ.get("CUPY_TF32"), torch_note=torch_note,
            torch=getattr(torch, "__version__", None), torch_cuda=bool(torch and torch.cuda.is_available()))
    if info["available"]:
        import cupy

        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(rt.getDevice())
        rec.put(device=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
                sms=props["multiProcessorCount"], memory_gib=round(props["totalGlobalMem"] / 2**30, 1),
                compute_capability=f"{props['major']}.{props['minor']}", cupy=cupy.__version__,
                cuda_runtime=rt.runtimeGetVersion(), cuda_driver=rt.driverGetVersion(),
                nvrtc=".".join(map(str, cupy.cuda.nvrtc.getVersion())))


def bench_rows(rec: Record, targets: list, names: list[str], profile: str, min_samples: int | None = None) -> None:
    """``dlaccel bench``'s rows (checked against NumPy, then timed) into ``rec["report"]``."""
    report = bench.run(targets, [bench.WORKLOADS[n] for n in names], profile, "float32", min_samples=min_samples,
                       progress=lambda s: print(f"  {s}", flush=True), isolate=ISOLATE, timeout_s=ROW_TIMEOUT_S)
    rec.put(report={k: report[k] for k in ("workloads", "results", "limits", "notes")})
    for r in report["results"]:
        if r["error"]:
            rec.note("failed", f"{r['workload']} on {r['backend']}: {r['error']}")


def fitted(model: Any) -> dict[str, np.ndarray]:
    return {**model.parameters, "costs": np.array([c for _, c in model.costs])}


def section_correctness(rec: Record, quick: bool) -> None:
    bench_rows(rec, [PoisonedCupy()], list(bench.WORKLOADS), "tiny" if quick else "quick", min_samples=1)
    # bench checks one step's outputs; a few iterations of fit check the updates and costs too.
    be, m, fits = PoisonedCupy(), 150 if quick else 5000, []
    for dtype in ("float32", "float64"):
        for hidden, n_y in FITS:
            what = f"fit DeepNN hidden={hidden} n_y={n_y} {dtype}"
            rng = np.random.default_rng(len(hidden))
            X, Y = rng.standard_normal((12, m)), rng.integers(0, max(n_y, 2), (1, m))
            try:
                models = [dlaccel.DeepNN([12, 16, 8, n_y], hidden_activation=hidden, seed=1, dtype=dtype, backend=b)
                          for b in ("numpy", be)]
                for model in models:
                    model.fit(X, Y, learning_rate=0.1, num_iterations=4, cost_every=1)
                check = bench.compare_outputs(fitted(models[1]), fitted(models[0]), dtype)
            except Exception as exc:  # NaN from an unwritten output stops the fit as diverged
                check = {"passed": False, "max_rel_error": None, "message": f"{type(exc).__name__}: {exc}"}
            rec.put(fits=[*fits, {"what": what, **check}])
            fits = rec["fits"]
            if not check["passed"]:
                rec.note("failed", f"{what}: {check['message']}")
    rec.put(lines=[f"correctness: {len(rec['report']['results'])} bench rows (outputs poisoned with NaN) and "
                   f"{len(fits)} fits against NumPy; {len(rec['failed'])} failed"])


def section_kernels(rec: Record, quick: bool) -> None:
    bench_rows(rec, [Cupy(), UnfusedCupy()], KERNEL_ROWS, "tiny" if quick else "full")
    report, limit = rec["report"], rec["report"]["limits"].get("device") or {}
    plain = {r["workload"]: r["median_s"] for r in report["results"] if r["backend"] == UnfusedCupy.name}
    lines = [f"device limits (float32): copy {limit.get('copy_gbps', 0):.0f} GB/s (read + write), GEMM "
             f"{limit.get('gemm_gflops', 0):.0f} GFLOP/s; x plain: plain CuPy's time over this row's",
             f"{'workload':12s} {'size':>26s} {'backend':>13s} {'median':>10s} {'rate':>16s} {'% limit':>8s} x plain"]
    for r in report["results"]:
        base = plain.get(r["workload"]) if r["backend"] != UnfusedCupy.name else None
        rate = "-" if r["rate"] is None else f"{r['rate']:.3g} {r['rate_unit']}"
        share = "-" if r["share_of_limit"] is None else f"{100 * r['share_of_limit']:.3g} %"
        lines.append(f"{r['workload']:12s} {report['workloads'][r['workload']]['describe']:>26s} {r['backend']:>13s} "
                     f"{'FAILED' if r['error'] else fmt_time(r['median_s']):>10s} {rate:>16s} {share:>8s} "
                     f"{fmt_ratio(base / r['median_s']) if base and r['median_s'] else '-':>7s}")
    rec.put(lines=lines)


def torch_case(torch: Any, layers: list[int], data: dict) -> bench.Case:
    """bench's ``deep`` step in PyTorch CUDA eager (nn.Linear + ReLU, cross-entropy, autograd, SGD,
    fp32) from the same initial parameters; examples as rows, PyTorch's layout."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    nn, dev = torch.nn, torch.device("cuda")
    linears = [nn.Linear(layers[l - 1], layers[l], device=dev) for l in range(1, len(layers))]
    with torch.no_grad():
        for l, lin in enumerate(linears, 1):
            lin.weight.copy_(torch.from_numpy(data["params"][f"W{l}"]))
            lin.bias.copy_(torch.from_numpy(data["params"][f"b{l}"].reshape(-1)))
    net = nn.Sequential(*[mod for lin in linears for mod in (lin, nn.ReLU())][:-1])
    X, y = torch.from_numpy(np.ascontiguousarray(data["X"].T)).to(dev), torch.from_numpy(data["labels"]).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(X), y)
        loss.backward()
        opt.step()
        return loss

    def outputs(loss: Any) -> dict[str, np.ndarray]:
        out = {"cost": np.asarray(loss.item())}
        for l, lin in enumerate(linears, 1):
            out[f"dW{l}"], out[f"db{l}"] = lin.weight.grad.cpu().numpy(), lin.bias.grad.cpu().numpy().reshape(-1, 1)
        return out

    return bench.Case(step=step, outputs=outputs, sync=torch.cuda.synchronize)


def section_training(rec: Record, quick: bool) -> None:
    f32, deep, be = np.dtype(np.float32), bench.WORKLOADS["deep"], Cupy()
    torch, note = bench.load_torch(1)
    if torch is not None and not torch.cuda.is_available():
        torch, note = None, "PyTorch sees no CUDA device, so there is no peer"
    limits = bench.measure_limits("tiny" if quick else "full", f32, be.xp, be.synchronize)
    rec.put(limits=limits, items=[], lines=[f"{'training step (float32, fp32 GEMMs)':38s} {'cupy':>10s} {'torch':>10s} "
                                             f"{'cupy/torch':>10s} {'TFLOP/s':>8s} {'% roofline':>10s}"])
    for layers in ([8, 4, 4, 3],) if quick else NETS:
        size = {"layers": tuple(layers), "m": 64 if quick else 8192}
        # Roofline: no faster than its GEMMs at the GEMM rate, nor than its bytes at the copy bandwidth.
        floor_s = max(deep.gemm_flops(size, f32) / (limits["gemm_gflops"] * 1e9),
                      deep.min_bytes(size, f32) / (limits["copy_gbps"] * 1e9))
        item: dict[str, Any] = {"net": "x".join(map(str, layers)), "m": size["m"], "flop": deep.work(size, f32),
                                "floor_s": floor_s}
        try:
            data = deep.data(size, f32)
            ref = deep.build(dlaccel.get_backend("numpy"), size, data)
            ref_out = ref.outputs(bench.first_call(ref)[1])
            for name in ("cupy", "torch") if torch is not None else ("cupy",):
                case = deep.build(be, size, data) if name == "cupy" else torch_case(torch, layers, data)
                check = bench.compare_outputs(case.outputs(bench.first_call(case)[1]), ref_out, f32)
                timing = bench.measure(case, 3, 0.2 if quick else 1.0)
                item[name] = {"median_s": timing.median_s, "min_s": min(timing.samples_s), "check": check}
                if not check["passed"]:
                    rec.note("failed", f"training {item['net']} on {name} vs NumPy: {check['message']}")
        except Exception as exc:
            rec.note("errors", f"training {item['net']}: {type(exc).__name__}: {exc}")
        cupy_s, torch_s = item.get("cupy", {}).get("median_s"), item.get("torch", {}).get("median_s")
        line = (f"{item['net'] + ' m=' + str(item['m']):38s} {fmt_time(cupy_s):>10s} {fmt_time(torch_s):>10s} "
                f"{fmt_ratio(cupy_s / torch_s) if cupy_s and torch_s else '-':>10s} "
                f"{item['flop'] / cupy_s / 1e12 if cupy_s else 0:8.1f} {100 * floor_s / (cupy_s or 1):9.0f}%")
        rec.put(items=[*rec["items"], item], lines=[*rec["lines"], line])
    rec.put(lines=[*rec["lines"], *([f"torch: {note}"] if note else [])])


def section_coldstart(rec: Record, quick: bool) -> None:
    """Time to first use of every float32 kernel in this process (CUPY_CACHE_DIR decides cold/warm)."""
    cache, t0 = os.environ.get("CUPY_CACHE_DIR"), time.perf_counter()
    state = "default" if cache is None else "filled" if any(Path(cache).iterdir()) else "empty"
    import cupy

    cupy.zeros(1).sum()  # CUDA context and CuPy's own first kernels, kept out of the kernel number
    cupy.cuda.Device().synchronize()
    from dlaccel.backends._cuda import KERNEL_FILES, kernel_names

    be, t1 = Cupy(), time.perf_counter()
    names = [(f, name) for f in KERNEL_FILES for name in kernel_names(f)]
    for filename, name in names:
        be._function(filename, name, np.dtype(np.float32))
    cupy.cuda.Device().synchronize()
    t2 = time.perf_counter()
    rec.put(context_s=t1 - t0, kernels_s=t2 - t1, kernels=len(names), modules=len(be._kernels._modules), cache=state,
            lines=[f"kernel first use, {state} CuPy disk cache (new process): {len(names)} kernels in "
                   f"{fmt_time(t2 - t1)}; CUDA context {fmt_time(t1 - t0)}"])


def _shards_on_gpu(client: Any, model: Any, X: Any, Y: Any) -> list[bool]:
    """For each shard of a fit's data, whether its worker holds it as a cupy array (moved once)."""
    from dlaccel.distributed import ShardedData, build_from_data

    def held(dask_worker: Any) -> list[bool]:
        import cupy

        shards = [v for k, v in dask_worker.data.items() if str(k).startswith("dlaccel-shard")]
        return [isinstance(v[0], cupy.ndarray) for v in shards]

    data = ShardedData(client, model, *build_from_data(model, X, Y, client))
    try:
        return [ok for found in client.run(held).values() for ok in found]
    finally:
        data.release()


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
        on_gpu = _shards_on_gpu(client, models[1], X, Y)
    check = bench.compare_outputs(fitted(models[1]), fitted(models[0]), np.float32)
    if not on_gpu or not all(on_gpu):
        rec.note("failed", f"dask-cuda: {sum(on_gpu)} of {len(on_gpu)} shards held as cupy arrays on the workers")
    rec.put(m=m, iterations=iterations, s_per_iteration=per_iteration, check=check, shards_on_gpu=on_gpu, lines=[
        f"dask-cuda: {rec['workers']} GPU worker(s), DeepNN [784,256,10] m={m}: {fmt_time(per_iteration['dask-cuda'])}"
        f"/iteration vs {fmt_time(per_iteration['in-process'])} in one process; max rel error "
        f"{check['max_rel_error']:.2g}"])
    if not check["passed"] or check["max_rel_error"] > 1e-4:  # sums reordered only: far inside float32's 1e-3
        rec.note("failed", f"dask-cuda fit vs in-process: max rel error {check['max_rel_error']} ({check['message']})")


SECTIONS = {"env": section_env, "correctness": section_correctness, "kernels": section_kernels,
            "training": section_training, "coldstart": section_coldstart, "dask-cuda": section_dask_cuda}


# -- orchestration ---------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float, env: dict | None = None, log: Path | None = None) -> str:
    """Run ``cmd`` in a session of its own: at its end or its time limit, everything it started goes."""
    with open(log, "w") if log else contextlib.nullcontext() as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return "ok" if code == 0 else f"child exited with {code}"


def run_section(name: str, timeout: float, quick: bool, env: dict | None = None) -> dict:
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    t0, cmd = time.perf_counter(), [sys.executable, str(HERE / "gpu_check.py"), "--section", name, "--result", path]
    status = run_child([*cmd, "--quick"] if quick else cmd, timeout, env)
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except Exception as exc:
        data = {"errors": [f"no result: {type(exc).__name__}: {exc}"]}
    Path(path).unlink(missing_ok=True)
    if data.get("errors") and status == "ok":
        status = f"{len(data['errors'])} error(s)"
    return {**data, "status": status, "wall_s": time.perf_counter() - t0}


def run_tests(timeout: float, log: Path) -> dict:
    t0 = time.perf_counter()
    status = run_child([sys.executable, "-m", "pytest", "-p", "gpu_check", str(REPO / "tests"), "-q", "-p",
                        "no:cacheprovider", "-k", TESTS, "--continue-on-collection-errors"], timeout, log=log)
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    print("\n".join(lines[-25:]), flush=True)
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|error)", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    return {"status": status, "wall_s": time.perf_counter() - t0, "errors": [], "counts": counts,
            "lines": [f"pytest (gpu/cupy): {counts}"],
            "failed": [line for line in lines if line.startswith(("FAILED ", "ERROR "))]}


def table(results: dict[str, dict]) -> str:
    env = results.get("env", {})
    lines = ["", "=" * 100, "dlaccel gpu_check summary", "=" * 100,
             f"device: {env.get('device', '-')}  SMs {env.get('sms', '-')}  cupy {env.get('cupy', '-')}  "
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
    if bad:
        return 1, bad
    return (0 if results.get("env", {}).get("cupy_available") else 2), []  # nothing checked is not a pass


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
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    print("== env", flush=True)
    results = {"env": run_section("env", LIMITS["env"], args.quick)}
    cache = {"CUPY_CACHE_DIR": tempfile.mkdtemp(prefix="dlaccel_cupy_cache_")}
    plan = [("correctness", {}), ("kernels", {}), ("training", {}), ("coldstart_cold", cache),
            ("coldstart_warm", cache), ("dask-cuda", {}), ("tests", {})]
    for key, env in plan if results["env"].get("cupy_available") else []:
        section = key.split("_")[0]
        limit = min(LIMITS[section], BUDGET_S - (time.perf_counter() - start)
                    - (0 if section == "tests" else TESTS_RESERVE_S))
        if limit < 10:
            results[key] = {"status": "skipped: out of time budget", "wall_s": 0.0}
            continue
        print(f"== {key} (limit {limit:.0f} s)", flush=True)
        try:
            results[key] = (run_tests(limit, (out_dir or Path(tempfile.mkdtemp())) / "pytest.log")
                            if section == "tests" else run_section(section, limit, args.quick, env))
        except Exception as exc:  # the table must still come out
            traceback.print_exc()
            results[key] = {"status": f"failed to run: {type(exc).__name__}: {exc}", "wall_s": 0.0}
    total_s = time.perf_counter() - start
    if out_dir:
        (out_dir / "gpu_check.json").write_text(json.dumps({**results, "total_s": total_s}, indent=1, default=str))
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
