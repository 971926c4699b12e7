#!/usr/bin/env python3
"""One-shot check of the cupy backend on a GPU machine, in under 5 minutes.

    python3 benchmarks/gpu_check.py            # from the repository root; dlaccel need not be installed
    OUT=/some/dir python3 benchmarks/gpu_check.py   # also writes $OUT/gpu_check.json and $OUT/pytest.log

Sections, each in its own child process (a sticky CUDA error or a hang in one cannot take the
others down; each child has a time limit inside a 285 s budget):
  env          device, driver and library versions; whether the cupy backend is usable at all
  correctness  every fused kernel against NumPy (float64 reference) on fresh random inputs of
               several shapes, both dtypes, outputs poisoned with NaN so unwritten elements show
  kernels      CUDA-event timings at 64M float32 elements: each fused kernel, the unfused CuPy
               expression it replaces, and the share of the measured device copy bandwidth
  training     one training step of DeepNN [784,1024,1024,10] and [4096,4096,4096,10], m = 8192,
               float32, softmax, against PyTorch CUDA eager (autograd + SGD) when installed;
               both in full fp32 (TF32 off), like with like
  coldstart    kernel compilation into an empty CuPy cache, then loading from the filled cache
  dask_cuda    (when dask-cuda is installed) the data-parallel fit on a LocalCUDACluster, one worker
               per GPU, against the same fit on one GPU in-process: equal costs and parameters
               (float32, rtol 1e-4), shards held as cupy arrays on the workers, time per iteration
  tests        pytest on tests/ for everything GPU-marked or cupy-parametrized
A short table comes last. Any section that fails prints its error and the others still run. Exit
status: 0 when every section passed, 1 when any section failed or found wrong numbers, 2 when
there was no usable GPU, so nothing was checked (the table says GPU CHECK NOT RUN and why).

Finding the kernels without an install: the CUDA sources ship as the package ``dlaccel.kernels``
(a setuptools package-dir mapping of kernels/), which only exists once dlaccel is installed. This
script puts the repository root on sys.path and, only if ``dlaccel.kernels`` is not importable,
registers kernels/ under that name (a module spec with kernels/ as its search location), so the
library reads its sources through importlib.resources exactly as it does when installed; the
library itself keeps no repository-relative fallback. Children re-run this setup.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 285.0
TESTS_RESERVE_S = 60.0  # what the sections before "tests" must leave it
KERNEL_CALLS_PER_EVENT = 10  # a 64M-element kernel takes ~0.2-1 ms on an H200
SECTIONS = {  # name: time limit in seconds
    "env": 60,
    "correctness": 90,
    "kernels": 90,
    "training": 120,
    "coldstart": 60,
    "dask_cuda": 90,
    "tests": 150,
}


def setup_imports() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        found = importlib.util.find_spec("dlaccel.kernels") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        import dlaccel

        spec = importlib.util.spec_from_file_location(
            "dlaccel.kernels", REPO / "kernels" / "__init__.py", submodule_search_locations=[str(REPO / "kernels")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["dlaccel.kernels"] = module
        spec.loader.exec_module(module)
        dlaccel.kernels = module


# -- helpers shared by the sections ---------------------------------------------------------------


class Recorder:
    """Collects a section's results and rewrites its JSON file after every item, so a child that
    runs out of time still hands back what it measured."""

    def __init__(self, path: str | None):
        self.path, self.data = path, {"items": [], "errors": []}

    def add(self, **item: Any) -> None:
        self.data["items"].append(item)
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def error(self, where: str, exc: BaseException) -> None:
        text = f"{where}: {type(exc).__name__}: {exc}"
        print(f"  ERROR {text}", flush=True)
        traceback.print_exc()
        self.data["errors"].append(text)
        self.flush()

    def flush(self) -> None:
        if self.path:
            Path(self.path).write_text(json.dumps(self.data, indent=1, default=str))


def rel_error(got: Any, want: Any) -> float:
    """||got - want|| / ||want|| in float64 (NaN if got has NaN); 0 when both are zero."""
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    denom = float(np.linalg.norm(want))
    diff = float(np.linalg.norm(got - want))
    return diff / denom if denom > 0 else diff


def cuda_time_ms(fn, warmup: int = 3, reps: int = 15, per_event: int = 1) -> dict[str, float]:
    """Median and minimum milliseconds per call of ``fn``, from CUDA events around ``per_event``
    back-to-back calls, after warm-up. The device idles from the start event until the first
    launch arrives, so sub-millisecond kernels need several calls per event pair to hide that."""
    import cupy

    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(reps):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(per_event):
            fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / per_event)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def sizes(quick: bool, full: list, small: list) -> list:
    return small if quick else full


# -- sections (each runs in a child) -------------------------------------------------------------------


def section_env(rec: Recorder, quick: bool) -> None:
    import numpy as np

    import dlaccel

    rec.set("python", sys.version.split()[0])
    rec.set("numpy", np.__version__)
    info = dlaccel.available_backends()["cupy"]
    rec.set("cupy_available", info["available"])
    rec.set("cupy_reason", info["reason"])
    rec.set("CUPY_TF32", os.environ.get("CUPY_TF32"))
    if info["available"]:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
        name = props["name"]
        rec.set("device", name.decode() if isinstance(name, bytes) else str(name))
        rec.set("sms", int(props["multiProcessorCount"]))
        rec.set("memory_gib", round(props["totalGlobalMem"] / 2**30, 1))
        rec.set("compute_capability", f"{props['major']}.{props['minor']}")
        rec.set("cupy", cupy.__version__)
        rec.set("cuda_runtime", cupy.cuda.runtime.runtimeGetVersion())
        rec.set("cuda_driver", cupy.cuda.runtime.driverGetVersion())
        try:
            rec.set("nvrtc", ".".join(map(str, cupy.cuda.nvrtc.getVersion())))
        except Exception as exc:
            rec.error("nvrtc version", exc)
    try:
        import torch

        rec.set("torch", torch.__version__)
        rec.set("torch_cuda", bool(torch.cuda.is_available()))
    except Exception as exc:
        rec.set("torch", f"unavailable: {type(exc).__name__}: {exc}")


def _poisoned_backend():
    import cupy
    import numpy as np

    import dlaccel

    be = dlaccel.get_backend("cupy")
    be._empty = lambda shape, dtype: cupy.full(shape, np.nan, dtype=dtype)
    return be


def section_correctness(rec: Recorder, quick: bool) -> None:
    import cupy
    import numpy as np

    from dlaccel.backends.base import ACTIVATIONS, LOSSES, LayerCache
    from dlaccel.backends.numpy_backend import NumpyBackend

    be, ref = _poisoned_backend(), NumpyBackend()
    limit = {np.float32: 1e-4, np.float64: 1e-10}  # float32 includes a float32 GEMM vs float64
    shapes = sizes(quick, [(1, 1), (1, 100003), (10, 8192), (257, 1000), (1024, 4096), (70000, 3)], [(1, 1), (7, 37)])
    n_prev = 64
    seed = 0

    def check(op, dtype, shape, got, want, detail=""):
        got_host = cupy.asnumpy(got) if isinstance(got, cupy.ndarray) else np.asarray(got)
        unwritten = int(np.isnan(got_host).sum())
        err = rel_error(got_host, want)
        ok = unwritten == 0 and err <= limit[dtype]
        rec.add(op=op, detail=detail, dtype=np.dtype(dtype).name, shape=list(shape), rel_error=err,
                unwritten=unwritten, ok=ok)
        if not ok:
            print(f"  FAIL {op} {detail} {np.dtype(dtype).name} {shape}: rel_error={err:.3g} unwritten={unwritten}",
                  flush=True)

    for dtype in (np.float32, np.float64):
        for n, m in shapes:
            seed += 1
            rng = np.random.default_rng(seed)
            try:
                A_prev = rng.standard_normal((n_prev, m)).astype(dtype)
                W = (rng.standard_normal((n, n_prev)) / 4).astype(dtype)
                b = rng.standard_normal((n, 1)).astype(dtype)
                dA = rng.standard_normal((n, m)).astype(dtype)
                up = [x.astype(np.float64) for x in (A_prev, W, b, dA)]
                d_A_prev, d_W, d_b, d_dA = (be.asarray(x) for x in (A_prev, W, b, dA))
                for act in ACTIVATIONS:
                    A, cache = be.linear_activation_forward(d_A_prev, d_W, d_b, act)
                    A_ref, cache_ref = ref.linear_activation_forward(up[0], up[1], up[2], act)
                    check("bias+activation forward", dtype, (n, m), A, A_ref, act)
                    check("bias+activation forward (Z)", dtype, (n, m), cache.Z, cache_ref.Z, act)
                    Z64 = cupy.asnumpy(cache.Z).astype(np.float64)  # same Z on both sides from here
                    check("activation forward", dtype, (n, m), be.activation_forward(cache.Z, act),
                          ref.activation_forward(Z64, act), act)
                    check("activation backward", dtype, (n, m), be.activation_backward(d_dA, cache.Z, act),
                          ref.activation_backward(up[3], Z64, act), act)
                    got = be.linear_activation_backward(d_dA, cache, act)
                    # the GPU's own Z and A on both sides: rounding must not flip relu's mask
                    same = LayerCache(up[0], up[1], up[2], Z64, cupy.asnumpy(A).astype(np.float64))
                    want = ref.linear_activation_backward(up[3], same, act)
                    for label, g, w in zip(("dA_prev", "dW", "db"), got, want):
                        check(f"fused backward {label}", dtype, (n, m), g, w, act)
                for loss in LOSSES:
                    AL = rng.uniform(0, 1, (n, m)).astype(dtype)
                    Y = (rng.uniform(0, 1, (n, m)) > 0.5).astype(dtype)
                    d_AL, d_Y = be.asarray(AL), be.asarray(Y)
                    cost = be.compute_cost(d_AL, d_Y, loss)
                    check("cost", dtype, (n, m), np.array(cost), np.array(ref.compute_cost(AL.astype(np.float64),
                          Y.astype(np.float64), loss)), loss)
                    check("output gradient", dtype, (n, m), be.output_backward(d_AL, d_Y, loss),
                          AL.astype(np.float64) - Y, loss)
                P, G = rng.standard_normal((n, m)).astype(dtype), rng.standard_normal((n, m)).astype(dtype)
                want = P.astype(np.float64) - 0.01 * G.astype(np.float64)
                d_P = be.asarray(P)
                be.update_parameters({"W": d_P}, {"dW": be.asarray(G)}, 0.01)
                check("sgd update", dtype, (n, m), d_P, want)
                cupy.cuda.Device().synchronize()
            except Exception as exc:
                rec.error(f"correctness {np.dtype(dtype).name} {(n, m)}", exc)
    items = rec.data["items"]
    summary = {"checks": len(items), "failed": sum(not i["ok"] for i in items)}
    for name in ("float32", "float64"):
        summary[f"max_rel_error_{name}"] = max((i["rel_error"] for i in items if i["dtype"] == name), default=None)
    rec.set("summary", summary)


def measure_copy_bandwidth(nbytes: int) -> dict[str, float]:
    """Device-to-device copy, bytes read + written per second; the best of cudaMemcpy and an
    elementwise copy kernel."""
    import cupy

    src = cupy.arange(nbytes // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    rt = cupy.cuda.runtime

    def memcpy():
        rt.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes, rt.memcpyDeviceToDevice,
                       cupy.cuda.get_current_stream().ptr)

    def kernel_copy():
        cupy.copyto(dst, src)

    result = {}
    for name, fn in (("memcpy", memcpy), ("copy_kernel", kernel_copy)):
        t = cuda_time_ms(fn, warmup=3, reps=10, per_event=KERNEL_CALLS_PER_EVENT)
        result[f"{name}_GBps"] = 2 * src.nbytes / (t["median_ms"] * 1e-3) / 1e9
    result["GBps"] = max(result["memcpy_GBps"], result["copy_kernel_GBps"])
    return result


def section_kernels(rec: Recorder, quick: bool) -> None:
    import cupy

    import dlaccel
    from dlaccel.backends.numpy_backend import NumpyBackend

    be = dlaccel.get_backend("cupy")
    try:
        bw = measure_copy_bandwidth((1 << 20) if quick else (1 << 30))
        rec.set("copy_bandwidth", bw)
        copy_GBps = bw["GBps"]
        print(f"  copy bandwidth {copy_GBps:.0f} GB/s (read + write)", flush=True)
    except Exception as exc:
        rec.error("copy bandwidth", exc)
        copy_GBps = math.nan
    rows, cols = (4, 512) if quick else (8192, 8192)  # 64M elements
    N = rows * cols
    item = 4
    rs = cupy.random.RandomState(7)

    def randn(shape):
        return rs.standard_normal(shape, dtype=cupy.float32)

    def run(name, fused, unfused, bytes_moved, shape):
        try:
            f = cuda_time_ms(fused, per_event=KERNEL_CALLS_PER_EVENT)
            u = cuda_time_ms(unfused, per_event=KERNEL_CALLS_PER_EVENT)
            GBps = bytes_moved / (f["median_ms"] * 1e-3) / 1e9
            rec.add(kernel=name, shape=list(shape), fused_ms=f["median_ms"], fused_min_ms=f["min_ms"],
                    unfused_ms=u["median_ms"], unfused_min_ms=u["min_ms"], speedup=u["median_ms"] / f["median_ms"],
                    GBps=GBps, pct_of_copy=100 * GBps / copy_GBps)
            print(f"  {name:28s} fused {f['median_ms']:.3f} ms  unfused {u['median_ms']:.3f} ms  "
                  f"{GBps:.0f} GB/s = {100 * GBps / copy_GBps:.0f}% of copy", flush=True)
        except Exception as exc:
            rec.error(f"timing {name}", exc)

    def unfused_forward(Z, b, act):  # what the NumPy backend's code does on CuPy arrays
        Z += b
        return NumpyBackend.activation_forward(be, Z, act)

    try:
        Z, b = randn((rows, cols)), randn((rows, 1)) * 1e-3
        for act in ("relu", "sigmoid", "tanh", "leaky_relu", "linear"):
            run(f"bias+{act} forward", lambda act=act: be._bias_activation(Z, b, act),
                lambda act=act: unfused_forward(Z, b, act), 3 * N * item, (rows, cols))
        sm_rows = 16
        Zs, bs = randn((sm_rows, N // sm_rows)), randn((sm_rows, 1)) * 1e-3
        run("bias+softmax forward", lambda: be._bias_activation(Zs, bs, "softmax"),
            lambda: unfused_forward(Zs, bs, "softmax"), 3 * N * item, Zs.shape)
        dA, A = randn((rows, cols)), cupy.tanh(Z)
        for act, V in (("relu", Z), ("sigmoid", A), ("tanh", A)):
            def unfused(act=act):
                dZ = NumpyBackend._activation_backward(be, dA, Z, A, act)
                db = dZ.sum(axis=1, keepdims=True)
                db *= 1.0 / cols
                return dZ, db
            run(f"dA*g'({act})+db backward", lambda act=act, V=V: be._backward_db(dA, V, False, act, True, True),
                unfused, 3 * N * item, (rows, cols))
        AL = rs.random_sample((rows, cols), dtype=cupy.float32)
        Y = (rs.random_sample((rows, cols), dtype=cupy.float32) > 0.5).astype(cupy.float32)
        run("output gradient AL-Y", lambda: be.output_backward(AL, Y, "cross_entropy"), lambda: AL - Y,
            3 * N * item, (rows, cols))
        run("BCE cost", lambda: be.compute_cost(AL, Y, "binary_cross_entropy"),
            lambda: NumpyBackend.compute_cost(be, AL, Y, "binary_cross_entropy"), 2 * N * item, (rows, cols))
        P, G = randn((rows, cols)), randn((rows, cols))

        def unfused_sgd():
            nonlocal P
            P -= 1e-6 * G

        run("sgd update", lambda: be.update_parameters({"W": P}, {"dW": G}, 1e-6), unfused_sgd, 3 * N * item,
            (rows, cols))
    except Exception as exc:
        rec.error("kernel timings", exc)


def _step_flops(dims: list[int], m: int) -> float:
    products = [dims[l] * dims[l - 1] for l in range(1, len(dims))]
    # forward Z, backward dW for every layer, dA_prev for every layer but the first
    return 2.0 * m * (2 * sum(products) + sum(products[1:]))


def section_training(rec: Recorder, quick: bool) -> None:
    import cupy
    import numpy as np

    import dlaccel

    m = 64 if quick else 8192
    configs = [[8, 4, 4, 3]] if quick else [[784, 1024, 1024, 10], [4096, 4096, 4096, 10]]
    lr = 0.01
    try:
        import torch

        torch_ok = torch.cuda.is_available()
        torch_note = None if torch_ok else "torch.cuda.is_available() is False"
    except Exception as exc:
        torch, torch_ok, torch_note = None, False, f"{type(exc).__name__}: {exc}"
    rec.set("torch_note", torch_note)
    for dims in configs:
        label = "x".join(map(str, dims))
        rng = np.random.default_rng(len(dims) + dims[0])
        X = rng.standard_normal((dims[0], m)).astype(np.float32)
        labels = rng.integers(0, dims[-1], m)
        item: dict[str, Any] = {"dims": label, "m": m, "flops": _step_flops(dims, m)}
        try:
            item.update(_cupy_step(dlaccel, dims, X, labels, lr))
            print(f"  {label}: cupy {item['cupy_ms']:.2f} ms/step ({item['flops'] / item['cupy_ms'] / 1e9:.1f} "
                  "TFLOP/s)", flush=True)
            item["cupy_TFLOPs"] = item["flops"] / (item["cupy_ms"] * 1e-3) / 1e12
            cupy.get_default_memory_pool().free_all_blocks()
        except Exception as exc:
            rec.error(f"training cupy {label}", exc)
        if torch_ok:
            try:
                item.update(_torch_step(torch, dims, X, labels, lr))
                print(f"  {label}: torch {item['torch_ms']:.2f} ms/step", flush=True)
            except Exception as exc:
                rec.error(f"training torch {label}", exc)
            finally:
                torch.cuda.empty_cache()
        if "cupy_ms" in item and "torch_ms" in item:
            item["ratio_cupy_over_torch"] = item["cupy_ms"] / item["torch_ms"]
        rec.add(**item)


def _cupy_step(dlaccel, dims: list[int], X, labels, lr: float) -> dict[str, Any]:
    """One fit iteration without the cost record: forward, backward, update (what fit repeats)."""
    model = dlaccel.DeepNN(dims, dtype="float32", backend="cupy", seed=0)
    Xd, Yd = model._prepare(X, labels.reshape(1, -1))
    be = model.backend

    def step():
        _, grads = model._step(Xd, Yd, with_cost=False)
        be.update_parameters(model._params, grads, lr)

    first_cost = model.cost(X, labels.reshape(1, -1))
    t = cuda_time_ms(step, warmup=3, reps=10)
    return {"cupy_ms": t["median_ms"], "cupy_min_ms": t["min_ms"], "first_cost": first_cost,
            "cost_after": model.cost(X, labels.reshape(1, -1)),
            "cupy_finite": all(be.all_finite(p) for p in model._params.values())}


def _torch_step(torch, dims: list[int], X, labels, lr: float) -> dict[str, Any]:
    """The same net in idiomatic PyTorch eager: nn.Linear + ReLU, cross_entropy, SGD, full fp32."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    layers: list[Any] = []
    for l in range(1, len(dims)):
        layers.append(torch.nn.Linear(dims[l - 1], dims[l]))
        if l < len(dims) - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    Xt = torch.from_numpy(X.T.copy()).cuda()  # (m, n_x): examples as rows, torch's layout
    yt = torch.from_numpy(labels).cuda()

    def step():
        loss = torch.nn.functional.cross_entropy(net(Xt), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"torch_ms": statistics.median(times), "torch_min_ms": min(times),
            "torch_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


def section_coldstart(rec: Recorder, quick: bool) -> None:
    """Time to first use of every float32 kernel in this process (CUPY_CACHE_DIR decides cold/warm)."""
    import numpy as np

    t0 = time.perf_counter()
    import cupy

    cupy.zeros(1).sum()  # CUDA context and CuPy's own first kernels, kept out of the kernel number
    cupy.cuda.Device().synchronize()
    rec.set("context_s", time.perf_counter() - t0)
    from dlaccel.backends._cuda import KERNEL_FILES, kernel_names
    from dlaccel.backends.cupy_gpu import CupyBackend

    be = CupyBackend()
    t0 = time.perf_counter()
    count = 0
    for filename in KERNEL_FILES:
        for name in kernel_names(filename):
            be._function(filename, name, np.dtype(np.float32))
            count += 1
    cupy.cuda.Device().synchronize()
    rec.set("kernels_s", time.perf_counter() - t0)
    rec.set("kernels", count)
    rec.set("modules", len(be._kernels._modules))
    rec.set("cache_dir", os.environ.get("CUPY_CACHE_DIR"))


def _shards_on_gpu(dask_worker: Any) -> list[bool]:
    """On a worker: for each of the fit's shards it holds, whether its X is a cupy array (moved to
    the worker's GPU once, as issue 9 requires)."""
    import cupy

    return [isinstance(v[0], cupy.ndarray) for k, v in dask_worker.data.items() if str(k).startswith("dlaccel-shard")]


def section_dask_cuda(rec: Recorder, quick: bool) -> None:
    """The data-parallel fit on a dask-cuda LocalCUDACluster (one worker per GPU), against the same
    fit in this process on one GPU: equal costs and parameters, the shards kept on the GPUs, and the
    time per iteration of each."""
    try:
        import dask_cuda
    except ImportError as exc:
        rec.set("skipped", f"dask-cuda is not installed ({exc.name}); pip install dask-cuda")
        return
    import dask.array as da
    import distributed
    import numpy as np

    import dlaccel
    from dlaccel.bench.distributed import per_iteration
    from dlaccel.distributed import ShardedData, build_from_data

    dims, m, lr = ([8, 16, 3], 512, 0.1) if quick else ([784, 256, 10], 200_000, 0.1)
    iterations, repeats = ((1, 3), 1) if quick else ((2, 12), 2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((dims[0], m), dtype=np.float32)
    labels = rng.integers(0, dims[-1], (1, m))

    def fit(X: Any, client: Any = None):
        def run(n: int) -> Any:
            model = dlaccel.DeepNN(dims, backend="cupy", dtype="float32", seed=0)
            return model.fit(X, labels, learning_rate=lr, num_iterations=n, cost_every=1,
                             **({"client": client} if client is not None else {}))
        return run

    local = fit(X)(iterations[1])
    rec.set("local_ms", per_iteration(fit(X), iterations, repeats)["per_iteration_s"] * 1e3)
    with dask_cuda.LocalCUDACluster(dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        Xd = da.from_array(X, chunks=(dims[0], -(-m // (4 * workers))))
        dist = fit(Xd, client)(iterations[1])
        rec.set("workers", workers)
        rec.set("cluster_ms", per_iteration(fit(Xd, client), iterations, repeats)["per_iteration_s"] * 1e3)
        model = dlaccel.DeepNN(dims, backend="cupy", dtype="float32", seed=0)
        Xa, Ya = build_from_data(model, Xd, labels, client)
        data = ShardedData(client, model, Xa, Ya)
        try:
            on_gpu = [ok for found in client.run(_shards_on_gpu).values() for ok in found]
        finally:
            data.release()
    costs = np.array([c for _, c in dist.costs]), np.array([c for _, c in local.costs])
    cost_error = float(np.max(np.abs(costs[0] - costs[1]) / np.abs(costs[1])))
    param_error = max(rel_error(dist.parameters[k], p) for k, p in local.parameters.items())
    rec.set("shards", len(on_gpu))
    rec.set("shards_on_gpu", sum(on_gpu))
    rec.set("max_rel_cost_diff", cost_error)
    rec.set("max_rel_param_diff", param_error)
    rec.set("passed", cost_error <= 1e-4 and param_error <= 1e-4 and bool(on_gpu) and all(on_gpu))


class _Outcomes:
    """A pytest plugin that counts outcomes, recorded as they come (a timed-out run still tells)."""

    def __init__(self, rec: Recorder):
        self.rec = rec
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            key = report.outcome
            self.counts[key] = self.counts.get(key, 0) + 1
            if report.outcome == "failed":
                self.failed.append(f"{report.nodeid} ({report.when})")
            self.rec.set("counts", self.counts)
            self.rec.set("failed", self.failed)


def section_tests(rec: Recorder, quick: bool) -> None:
    import pytest

    plugin = _Outcomes(rec)
    # GPU-marked tests and every cupy-parametrized generic test; the CPU emulator and compiler
    # checks ran on the CPU machines already, and test_gpu_check.py is this script's dry run.
    selection = "(cupy or gpu) and not emulated and not nvcc and not nvrtc and not gpu_check"
    args = [str(REPO / "tests"), "-q", "-p", "no:cacheprovider", "-k", selection, "--continue-on-collection-errors"]
    code = pytest.main(args, plugins=[plugin])
    rec.set("exit_code", int(code))


SECTION_FUNCTIONS = {
    "env": section_env,
    "correctness": section_correctness,
    "kernels": section_kernels,
    "training": section_training,
    "coldstart": section_coldstart,
    "dask_cuda": section_dask_cuda,
    "tests": section_tests,
}


# -- orchestration ---------------------------------------------------------------------------------------


def run_child(section: str, timeout: float, quick: bool, env: dict | None = None, log: Path | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", section, "--result", result_path]
    if quick:
        cmd.append("--quick")
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.perf_counter()
    status = "ok"
    try:
        if log is None:
            proc = subprocess.run(cmd, env=child_env, timeout=timeout, cwd=REPO)
        else:
            with open(log, "w") as out:
                proc = subprocess.run(cmd, env=child_env, timeout=timeout, cwd=REPO, stdout=out,
                                      stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            status = f"child exited with {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    try:
        data = json.loads(Path(result_path).read_text() or "{}")
    except Exception as exc:
        data = {"errors": [f"no result: {type(exc).__name__}: {exc}"]}
    finally:
        Path(result_path).unlink(missing_ok=True)
    data["status"] = status
    data["wall_s"] = time.perf_counter() - t0
    if data.get("errors") and status == "ok":
        data["status"] = f"{len(data['errors'])} error(s)"
    return data


def main_child(section: str, result: str, quick: bool) -> int:
    rec = Recorder(result)
    rec.flush()
    try:
        setup_imports()
        SECTION_FUNCTIONS[section](rec, quick)
    except BaseException as exc:  # report, never raise: the parent reads the file
        rec.error(section, exc)
    return 0


def fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else format(x, spec)
    return str(x)


def table(results: dict[str, dict]) -> str:
    lines = ["", "=" * 100, "dlaccel gpu_check summary", "=" * 100]
    env = results.get("env", {})
    lines.append(f"device: {env.get('device', '-')}  SMs {env.get('sms', '-')}  cupy {env.get('cupy', '-')}  "
                 f"torch {env.get('torch', '-')}  CUPY_TF32={env.get('CUPY_TF32')}")
    if not env.get("cupy_available"):
        lines.append(f"GPU CHECK NOT RUN: cupy backend unavailable: {env.get('cupy_reason') or env.get('errors')}")
    lines.append("sections: " + ", ".join(f"{k}={v.get('status')} ({v.get('wall_s', 0):.0f}s)"
                                          for k, v in results.items()))
    corr = results.get("correctness", {}).get("summary")
    if corr:
        lines.append(f"correctness: {corr['checks']} checks, {corr['failed']} failed; max rel error "
                     f"float32 {fmt(corr['max_rel_error_float32'])}, float64 {fmt(corr['max_rel_error_float64'])}")
    kern = results.get("kernels", {})
    if kern.get("copy_bandwidth") or kern.get("items"):
        bw = kern.get("copy_bandwidth", {})
        lines.append(f"copy bandwidth (read+write): {fmt(bw.get('GBps'), '.0f')} GB/s (memcpy "
                     f"{fmt(bw.get('memcpy_GBps'), '.0f')}, copy kernel {fmt(bw.get('copy_kernel_GBps'), '.0f')})")
        lines.append(f"{'kernel (float32)':30s} {'shape':>14s} {'fused ms':>9s} {'unfused ms':>10s} {'speedup':>8s} "
                     f"{'GB/s':>7s} {'% copy':>7s}")
        lines.extend(f"{it['kernel']:30s} {'x'.join(map(str, it['shape'])):>14s} {it['fused_ms']:9.3f} "
                     f"{it['unfused_ms']:10.3f} {it['speedup']:8.2f} {it['GBps']:7.0f} "
                     f"{fmt(it['pct_of_copy'], '.0f'):>7s}" for it in kern.get("items", []))
    train = results.get("training", {})
    if train.get("items"):
        lines.append(f"{'training step (float32, fp32 GEMMs)':38s} {'cupy ms':>9s} {'torch ms':>9s} {'ratio':>7s} "
                     f"{'cupy TFLOP/s':>13s}")
        lines.extend(f"{it['dims'] + ' m=' + str(it['m']):38s} {fmt(it.get('cupy_ms'), '.2f'):>9s} "
                     f"{fmt(it.get('torch_ms'), '.2f'):>9s} {fmt(it.get('ratio_cupy_over_torch'), '.3f'):>7s} "
                     f"{fmt(it.get('cupy_TFLOPs'), '.1f'):>13s}" for it in train["items"])
        if train.get("torch_note"):
            lines.append(f"torch: {train['torch_note']}")
    cold, warm = results.get("coldstart_cold", {}), results.get("coldstart_warm", {})
    if "kernels_s" in cold or "kernels_s" in warm:
        lines.append(f"kernel first use, {cold.get('modules', '-')} modules: cold (empty cache) "
                     f"{fmt(cold.get('kernels_s'), '.2f')} s, warm (filled disk cache, new process) "
                     f"{fmt(warm.get('kernels_s'), '.2f')} s; CUDA context {fmt(cold.get('context_s'), '.2f')} s")
    dc = results.get("dask_cuda", {})
    if dc.get("skipped"):
        lines.append(f"dask-cuda: skipped: {dc['skipped']}")
    elif "passed" in dc:
        lines.append(f"dask-cuda, {dc.get('workers')} GPU worker(s): fit equal to one GPU "
                     f"{'yes' if dc['passed'] else 'NO'} (costs {fmt(dc['max_rel_cost_diff'])}, parameters "
                     f"{fmt(dc['max_rel_param_diff'])} rel), {dc['shards_on_gpu']}/{dc['shards']} shards on GPU; "
                     f"per iteration one GPU {fmt(dc.get('local_ms'), '.3g')} ms, "
                     f"cluster {fmt(dc.get('cluster_ms'), '.3g')} ms")
    tests = results.get("tests", {})
    if "counts" in tests:
        lines.append(f"pytest (gpu/cupy): exit {tests.get('exit_code')}, {tests['counts']}")
        lines.extend(f"  FAILED {nodeid}" for nodeid in tests.get("failed", [])[:10])
    for name, res in results.items():
        lines.extend(f"error in {name}: {err[:200]}" for err in res.get("errors", [])[:3])
    lines.append("=" * 100)
    return "\n".join(lines)


def verdict(results: dict[str, dict]) -> tuple[int, list[str]]:
    """The exit status (see the module docstring) and the sections with problems."""
    bad = {k for k, v in results.items() if v.get("status") != "ok"}
    if results.get("correctness", {}).get("summary", {}).get("failed", 0):
        bad.add("correctness")
    if results.get("tests", {}).get("exit_code", 0):
        bad.add("tests")
    if results.get("dask_cuda", {}).get("passed") is False:
        bad.add("dask_cuda")
    if bad:
        return 1, sorted(bad)
    return (0 if results.get("env", {}).get("cupy_available") else 2), []  # nothing checked is not a pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=list(SECTION_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every code path")
    args = parser.parse_args()
    if args.section:
        return main_child(args.section, args.result, args.quick)

    start = time.perf_counter()
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out_dir:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"cannot use OUT={out_dir}: {exc}", flush=True)
            out_dir = None
    results: dict[str, dict] = {}

    def remaining(cap: float, reserve: float = 0.0) -> float:
        return min(cap, BUDGET_S - reserve - (time.perf_counter() - start))

    print("== env", flush=True)
    results["env"] = run_child("env", SECTIONS["env"], args.quick)
    available = bool(results["env"].get("cupy_available"))
    if not available:
        print(f"cupy backend unavailable: {results['env'].get('cupy_reason')}; skipping the GPU sections", flush=True)
    else:
        cache = tempfile.mkdtemp(prefix="dlaccel_cupy_cache_")
        plan = [("correctness", {}, "correctness"), ("kernels", {}, "kernels"), ("training", {}, "training"),
                ("coldstart", {"CUPY_CACHE_DIR": cache}, "coldstart_cold"),
                ("coldstart", {"CUPY_CACHE_DIR": cache}, "coldstart_warm"), ("dask_cuda", {}, "dask_cuda"),
                ("tests", {}, "tests")]
        for section, env, key in plan:
            limit = remaining(SECTIONS[section], 0.0 if section == "tests" else TESTS_RESERVE_S)
            if limit < 10:
                results[key] = {"status": "skipped: out of time budget", "wall_s": 0.0}
                continue
            print(f"== {key} (limit {limit:.0f} s)", flush=True)
            log = None
            if section == "tests":
                log = (out_dir / "pytest.log") if out_dir else Path(tempfile.mkdtemp()) / "pytest.log"
            try:
                results[key] = run_child(section, limit, args.quick, env, log)
                if log is not None and log.exists():
                    tail = log.read_text(errors="replace").splitlines()[-25:]
                    print("\n".join(tail), flush=True)
            except Exception as exc:  # the table must still come out
                traceback.print_exc()
                results[key] = {"status": f"failed to run: {type(exc).__name__}: {exc}", "wall_s": 0.0}
    results["total_s"] = {"status": "ok", "wall_s": time.perf_counter() - start}
    if out_dir:
        try:
            (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
        except Exception as exc:
            print(f"could not write {out_dir}/gpu_check.json: {exc}", flush=True)
    print(table({k: v for k, v in results.items() if k != "total_s"}))
    print(f"total {results['total_s']['wall_s']:.0f} s", flush=True)
    code, bad = verdict(results)
    if bad:
        print(f"gpu_check: problems in {', '.join(bad)}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
