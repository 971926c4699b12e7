"""The cupy backend: probe, errors, packaging and kernel compilation on any machine; the kernels
themselves on a CPU emulator (g++); the real thing on a GPU (``gpu`` marker)."""

from __future__ import annotations

import importlib.machinery
import importlib.resources
import itertools
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import dlaccel
from dlaccel import backends
from dlaccel.backends import _cuda, _probe, cupy_gpu
from dlaccel.backends._cuda import KERNEL_FILES
from dlaccel.backends.base import ACTIVATIONS, LOSSES, LayerCache
from dlaccel.backends.cupy_gpu import CupyBackend
from dlaccel.backends.numpy_backend import NumpyBackend
from dlaccel.errors import BackendUnavailableError, DeviceMismatchError, DtypeError, InputError

from . import cuda_emulator
from .conftest import tol

DTYPES = [np.float32, np.float64]


# -- the probe --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_probe():
    _probe.cupy.cache_clear()
    yield _probe.cupy
    _probe.cupy.cache_clear()


def _fake_cupy(monkeypatch, get_count, nvrtc_version=lambda: (12, 8)):
    fake = types.ModuleType("cupy")
    fake.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count),
                                      nvrtc=types.SimpleNamespace(getVersion=nvrtc_version))
    monkeypatch.setitem(sys.modules, "cupy", fake)


def test_probe_without_cupy_names_the_extras(monkeypatch, fresh_probe):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "cupy" else real_find_spec(name, *args)

    monkeypatch.setattr(_probe.importlib.util, "find_spec", find_spec)
    reason = fresh_probe()
    assert "not installed" in reason and "dlaccel[cuda12]" in reason and "dlaccel[cuda13]" in reason


def test_probe_without_a_device(monkeypatch, fresh_probe):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    _fake_cupy(monkeypatch, no_driver)
    reason = fresh_probe()
    assert reason.startswith("no usable CUDA device") and "cudaErrorInsufficientDriver" in reason


def test_probe_with_zero_devices(monkeypatch, fresh_probe):
    _fake_cupy(monkeypatch, lambda: 0)
    assert fresh_probe() == "no CUDA device found"


def test_probe_without_nvrtc(monkeypatch, fresh_probe):
    def no_nvrtc():
        raise RuntimeError("CuPy failed to load libnvrtc.so.12")

    _fake_cupy(monkeypatch, lambda: 1, no_nvrtc)
    reason = fresh_probe()
    assert reason.startswith("CuPy cannot load NVRTC") and "libnvrtc.so.12" in reason and "dlaccel[cuda12]" in reason


def test_probe_with_a_broken_install(monkeypatch, fresh_probe):
    _fake_cupy(monkeypatch, lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    monkeypatch.setattr(_probe.importlib.util, "find_spec", lambda name, *a: importlib.machinery.ModuleSpec(name, None))
    assert fresh_probe().startswith("CuPy is installed but failed to import: ModuleNotFoundError")


def test_probe_with_a_device(monkeypatch, fresh_probe):
    _fake_cupy(monkeypatch, lambda: 1)
    assert fresh_probe() is None
    assert CupyBackend.unavailable_reason() is None


def test_unavailable_cupy_raises_with_the_reason_and_auto_skips_it(monkeypatch, fresh_probe):
    _fake_cupy(monkeypatch, lambda: (_ for _ in ()).throw(RuntimeError("no driver here")))
    monkeypatch.setattr(backends, "_instances", {})
    info = dlaccel.available_backends()["cupy"]
    assert info["available"] is False and "no driver here" in info["reason"]
    with pytest.raises(BackendUnavailableError, match="'cupy' is not available: no usable CUDA device.*no driver"):
        dlaccel.get_backend("cupy")
    assert dlaccel.get_backend("auto").name != "cupy"


# -- device discipline (no GPU needed: the checks run before any device work) -----------------------


class FakeCupyArray:
    """Looks like a CuPy array to the type checks: ``type(x).__module__`` is ``cupy``."""

    __module__ = "cupy"
    ndim = 2
    shape = (2, 2)
    dtype = np.dtype(np.float64)


@pytest.fixture
def cupy_backend(monkeypatch):
    """A CupyBackend for checks that never reach the device; with a stand-in module if CuPy is absent."""
    if cupy_gpu.cupy is None:
        stand_in = types.SimpleNamespace(ndarray=FakeCupyArray, __name__="cupy", asarray=None)
        monkeypatch.setattr(cupy_gpu, "cupy", stand_in)
        monkeypatch.setattr(CupyBackend, "xp", stand_in)
    return CupyBackend()


def test_numpy_backend_rejects_a_cupy_array():
    with pytest.raises(DeviceMismatchError, match=r"'numpy' backend computes on the host.*backend.to_numpy\(x\)"):
        NumpyBackend().linear_forward(FakeCupyArray(), np.ones((2, 2)), np.ones((2, 1)))


def test_cupy_backend_rejects_numpy_arrays(cupy_backend):
    A = np.ones((2, 3))
    with pytest.raises(DeviceMismatchError, match=r"'cupy' backend computes on the GPU.*backend.asarray\(x\)"):
        cupy_backend.linear_activation_forward(A, np.ones((2, 2)), np.ones((2, 1)), "relu")
    with pytest.raises(DeviceMismatchError):
        cupy_backend.compute_cost(A, A, "binary_cross_entropy")
    with pytest.raises(DeviceMismatchError):
        cupy_backend.update_parameters({"W1": A}, {"dW1": A}, 0.1)


@pytest.mark.parametrize("value", [np.array(["a", "b"]), [["x"]], np.array([1 + 2j])])
def test_cupy_asarray_rejects_non_numeric_before_touching_the_device(cupy_backend, value):
    with pytest.raises(DtypeError, match="numeric"):
        cupy_backend.asarray(value)


def test_cupy_asarray_rejects_a_non_numeric_dtype(cupy_backend):
    with pytest.raises(DtypeError, match="numeric"):
        cupy_backend.asarray([[1.0]], dtype="U3")


# -- packaging and compilation ------------------------------------------------------------------------


def test_every_kernel_source_ships_in_the_package():
    files = importlib.resources.files("dlaccel.kernels")
    shipped = {p.name for p in files.iterdir() if p.name.endswith((".cu", ".cuh"))}
    assert shipped == {*KERNEL_FILES, _cuda.COMMON_HEADER}
    repo_kernels = Path(__file__).resolve().parents[1] / "kernels"
    if repo_kernels.is_dir():  # a checkout: nothing in kernels/ is left out of the package
        assert shipped == {p.name for p in repo_kernels.iterdir() if p.suffix in (".cu", ".cuh")}
    for name in shipped:
        text = (files / name).read_text(encoding="utf-8")
        assert text.startswith(f"// {name}:"), f"{name} must open with its header comment"
        if name.endswith(".cu"):
            assert "Launch convention" in text and "Instantiated types: float and double" in text


@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernel_source_inlines_the_header(filename):
    source = _cuda.kernel_source(filename)
    assert "#include" not in source and "#pragma once" not in source
    assert "__device__ __forceinline__ acc_t block_sum" in source


def test_missing_kernel_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_cuda, "KERNEL_PACKAGE", "dlaccel.no_such_kernels")
    with pytest.raises(BackendUnavailableError, match="kernel sources are missing.*pip install -e"):
        _cuda.kernel_source("sgd.cu")


def test_compile_options_name_the_type_and_the_slope():
    assert _cuda.compile_options(np.float32) == ("-std=c++17", "-DDLACCEL_T=float", "-DDLACCEL_LEAKY_SLOPE=0.01")
    assert "-DDLACCEL_T=double" in _cuda.compile_options("float64")


def _entries(ptx: str) -> set[str]:
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float", "double"])
@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernels_compile_with_nvcc(tmp_path, filename, dtype):
    """The exact source the backend hands NVRTC, compiled by nvcc for sm_90, warnings as errors."""
    src = tmp_path / filename
    src.write_text(_cuda.kernel_source(filename))
    out = tmp_path / "out.ptx"
    cmd = ["nvcc", "--ptx", "-arch=sm_90", "--Werror", "all-warnings", *_cuda.compile_options(dtype),
           "-o", str(out), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _entries(out.read_text()) == set(_cuda.kernel_names(filename))


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC is not loadable here: {type(exc).__name__}: {exc}")
    return nvrtc


@pytest.mark.parametrize("dtype", DTYPES, ids=["float", "double"])
@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernels_compile_with_nvrtc(filename, dtype):
    """NVRTC has no standard headers: the sources must compile with it as the backend calls it."""
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(_cuda.kernel_source(filename), filename, (), ())
    try:
        nvrtc.compileProgram(prog, (*_cuda.compile_options(dtype), "-arch=compute_90"))
    except Exception:
        pytest.fail(nvrtc.getProgramLog(prog))
    assert _entries(nvrtc.getPTX(prog).decode()) == set(_cuda.kernel_names(filename))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float", "double"])
@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernels_compile_with_the_options_cupy_adds(filename, dtype):
    """RawModule adds its own options (cupy/cuda/compiler.py): flush-to-zero, a cubin for the
    device's arch, device as the default execution space, and a precompiled header on NVRTC >= 12.8."""
    nvrtc = _nvrtc()
    added = ["-ftz=true", "-arch=sm_90", "--device-as-default-execution-space"]
    if nvrtc.getVersion() >= (12, 8):
        added.append("--pch")
    prog = nvrtc.createProgram(_cuda.kernel_source(filename), filename, (), ())
    try:
        nvrtc.compileProgram(prog, (*_cuda.compile_options(dtype), *added))
    except Exception:
        pytest.fail(nvrtc.getProgramLog(prog))
    assert len(nvrtc.getCUBIN(prog)) > 0


# -- launch geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, m", [(1, 1), (1, 64 << 20), (10, 8192), (1024, 8192), (8192, 8192), (70000, 3)])
def test_rows_grid_fills_the_gpu_without_empty_chunks(n, m):
    chunks, rows, one = _cuda.rows_grid(n, m, 132)
    assert one == 1 and rows == min(n, 65535) and chunks >= 1
    assert (chunks - 1) * _cuda.THREADS * _cuda.ITEMS < m  # every chunk gets work
    enough_blocks = rows * chunks >= 132 * _cuda.BLOCKS_PER_SM // 2
    assert enough_blocks or chunks == -(-m // (_cuda.THREADS * _cuda.ITEMS))  # else: as many as m allows


def test_flat_and_columns_grids():
    assert _cuda.flat_grid(1, 132) == (1,)
    assert _cuda.flat_grid(64 << 20, 132) == (132 * _cuda.BLOCKS_PER_SM,)
    assert _cuda.columns_grid(8192, 132) == (32,)
    assert _cuda.columns_grid(10**9, 132) == (132 * _cuda.BLOCKS_PER_SM,)


# -- the kernels on a CPU emulator (tests/cuda_emulator.py; fixture `emulated` in conftest.py) ---------


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# (n, n_prev, m): one row, one column, more rows than gridDim.y, several column chunks, ragged tails.
EMU_SHAPES = [(1, 3, 1), (1, 2, 2000), (7, 4, 37), (5, 3, 600)]


def _close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert not np.isnan(got).any(), "an output element was not written"
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n, n_prev, m", EMU_SHAPES)
def test_emulated_forward_and_backward(emulated, dtype, n, n_prev, m):
    ref, rng = NumpyBackend(), np.random.default_rng(n * 1000 + m)
    A_prev, W, b = _rand(rng, (n_prev, m), dtype), _rand(rng, (n, n_prev), dtype), _rand(rng, (n, 1), dtype)
    dA = _rand(rng, (n, m), dtype)
    for activation in ACTIVATIONS:
        A, cache = emulated.linear_activation_forward(A_prev, W, b, activation)
        A_ref, cache_ref = ref.linear_activation_forward(A_prev, W, b, activation)
        _close(A, A_ref, dtype)
        _close(cache.Z, cache_ref.Z, dtype)
        _close(emulated.activation_forward(cache_ref.Z, activation), A_ref, dtype)
        _close(emulated.activation_backward(dA, cache_ref.Z, activation),
               ref.activation_backward(dA, cache_ref.Z, activation), dtype)
        got = emulated.linear_activation_backward(dA, cache, activation)
        for g, w in zip(got, ref.linear_activation_backward(dA, cache_ref, activation)):
            _close(g, w, dtype)
    for g, w in zip(emulated.linear_backward(dA, A_prev, W), ref.linear_backward(dA, A_prev, W)):
        _close(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n, m", [(1, 1), (1, 3000), (4, 77)])
def test_emulated_cost_output_and_update(emulated, dtype, loss, n, m):
    ref, rng = NumpyBackend(), np.random.default_rng(m)
    AL = rng.uniform(0, 1, (n, m)).astype(dtype)
    AL[0, 0] = 0.0  # saturated: the clip must keep the log finite
    Y = (rng.uniform(0, 1, (n, m)) > 0.5).astype(dtype)
    assert emulated.compute_cost(AL, Y, loss) == pytest.approx(ref.compute_cost(AL, Y, loss), rel=tol(dtype)["rtol"])
    _close(emulated.output_backward(AL, Y, loss), ref.output_backward(AL, Y, loss), dtype)
    P, G = _rand(rng, (n, m), dtype), _rand(rng, (n, m), dtype)
    want = P - dtype(0.05) * G
    out = emulated.update_parameters({"W1": P}, {"dW1": G}, 0.05)
    assert out["W1"] is P
    np.testing.assert_allclose(P, want, **tol(dtype))


def test_emulated_nan_stays_visible(emulated):
    Z = np.array([[np.nan, 1.0], [0.0, 2.0]])
    for activation in ACTIVATIONS:
        assert np.isnan(emulated.activation_forward(Z, activation)[0, 0]), activation
    AL = np.array([[np.nan, 0.5]])
    assert np.isnan(emulated.compute_cost(AL, np.ones_like(AL), "binary_cross_entropy"))


def _same_values(got, want):
    """Equal value for value: NaN where NumPy has NaN, and the same sign on every zero."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_emulated_relu_family_propagates_nan_like_numpy(emulated, dtype, activation):
    """Every pairing of special Z and dA values, forward, backward and the fused backward's db:
    NaN or inf in dA survives where Z <= 0 (dA * [Z > 0] is NaN there), relu'(0) = 0."""
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, 1e-30], dtype=dtype)
    Z, dA = (a.reshape(1, -1).repeat(3, axis=0) for a in np.meshgrid(special, special))  # (3, 64)
    Z, dA = np.ascontiguousarray(Z), np.ascontiguousarray(dA)
    ref = NumpyBackend()
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference is the point
        _same_values(emulated.activation_forward(Z, activation), ref.activation_forward(Z, activation))
        dZ_ref = ref.activation_backward(dA, Z, activation)
        _same_values(emulated.activation_backward(dA, Z, activation), dZ_ref)
        assert np.isnan(dZ_ref[np.isnan(dA)]).all()  # the property under test, as the reference has it
        A_prev, W = np.ones((1, Z.shape[1]), dtype), np.ones((3, 1), dtype)
        cache = LayerCache(A_prev, W, np.zeros((3, 1), dtype), Z, ref.activation_forward(Z, activation))
        got = emulated.linear_activation_backward(dA, cache, activation)
        want = ref.linear_activation_backward(dA, cache, activation)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))


@pytest.mark.parametrize("op", ["compute_cost", "output_backward"])
def test_emulated_output_ops_reject_bad_input_before_launching(emulated, op):
    AL = np.full((1, 3), 0.5)
    with pytest.raises(InputError, match="unknown loss 'hinge'"):
        getattr(emulated, op)(AL, np.ones_like(AL), "hinge")
    with pytest.raises(DtypeError, match="got list"):  # not an array of this backend
        getattr(emulated, op)(AL, [[1.0, 0.0, 1.0]], "binary_cross_entropy")


def test_emulated_fallbacks_keep_numpy_semantics(emulated):
    """Inputs the kernels don't cover (other dtypes, views, broadcast shapes) go to the NumPy code."""
    ref, rng = NumpyBackend(), np.random.default_rng(0)
    Z16 = rng.standard_normal((3, 5)).astype(np.float16)
    np.testing.assert_allclose(emulated.activation_forward(Z16, "sigmoid"), ref.activation_forward(Z16, "sigmoid"))
    A_prev = rng.standard_normal((9, 4)).T  # F-ordered view
    W, b = rng.standard_normal((2, 4)), rng.standard_normal((2, 1))
    A, _ = emulated.linear_activation_forward(A_prev, W, b, "tanh")
    np.testing.assert_allclose(A, ref.linear_activation_forward(A_prev, W, b, "tanh")[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_emulated_layer_on_an_f_ordered_input_runs_fused(emulated, monkeypatch, dtype):
    """The course's X is F-ordered (``images.reshape(m, -1).T``): cuBLAS takes it as it is, and the
    first layer's bias, activation and backward still run in the fused kernels."""
    fetched, real = [], CupyBackend._function
    monkeypatch.setattr(CupyBackend, "_function",
                        lambda self, filename, name, dt: fetched.append(name) or real(self, filename, name, dt))
    ref, rng = NumpyBackend(), np.random.default_rng(0)
    A_prev = np.asfortranarray(_rand(rng, (6, 50), dtype))
    W, b, dA = _rand(rng, (4, 6), dtype), _rand(rng, (4, 1), dtype), _rand(rng, (4, 50), dtype)
    assert not A_prev.flags.c_contiguous
    A, cache = emulated.linear_activation_forward(A_prev, W, b, "tanh")
    grads = emulated.linear_activation_backward(dA, cache, "tanh")
    assert fetched == ["bias_act_forward_tanh", "act_backward_db_tanh", "finalize_row_sums"]
    A_ref, cache_ref = ref.linear_activation_forward(A_prev, W, b, "tanh")
    _close(A, A_ref, dtype)
    for got, want in zip(grads, ref.linear_activation_backward(dA, cache_ref, "tanh")):
        _close(got, want, dtype)


@pytest.mark.parametrize("hidden, n_y", [("tanh", 1), ("relu", 3)])
def test_emulated_fit_matches_numpy(emulated, hidden, n_y):
    """Whole training runs through the fused wrappers: sigmoid + BCE and softmax + CE outputs."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 150))
    Y = rng.integers(0, 2 if n_y == 1 else n_y, (1, 150))
    models = [dlaccel.DeepNN([4, 8, 5, n_y], hidden_activation=hidden, seed=2, backend=be)
              for be in ("numpy", emulated)]
    for model in models:
        model.fit(X, Y, learning_rate=0.1, num_iterations=20, cost_every=5)
    assert models[1].backend is emulated
    np.testing.assert_allclose([c for _, c in models[1].costs], [c for _, c in models[0].costs], rtol=1e-10)
    for key, value in models[0].parameters.items():
        np.testing.assert_allclose(models[1].parameters[key], value, rtol=1e-9, atol=1e-12, err_msg=key)


# Hidden activation and output size of the fits that, between them, run every kernel: each hidden
# activation's forward and backward, sigmoid + cross-entropy and softmax + cross-entropy outputs.
FITS = [("sigmoid", 1), ("tanh", 3), ("relu", 1), ("leaky_relu", 3), ("linear", 1)]


def _bench_failures(backend, profile):
    """`dlaccel bench` on ``backend``: every workload's outputs checked against NumPy's; the rows that failed."""
    from dlaccel import bench

    report = bench.run([backend], None, profile, isolate=False, min_samples=1)
    assert {r["workload"] for r in report["results"]} == set(bench.WORKLOADS)
    assert report["limits"]["device_backends"] == ["cupy"]
    return [f"{r['workload']} on cupy: {r['error']}" for r in report["results"] if r["error"]]


def _fit_failures(backend, m):
    """Four iterations of every FITS net in both dtypes against NumPy's: the parameters after each
    update and every cost (one step's outputs, as bench checks them, cannot show a wrong update)."""
    from dlaccel.bench import compare_outputs

    def fitted(model):
        return {**model.parameters, "costs": np.array([c for _, c in model.costs])}

    failures = []
    for dtype, (hidden, n_y) in itertools.product(("float32", "float64"), FITS):
        rng = np.random.default_rng(len(hidden))
        X, Y = rng.standard_normal((12, m)), rng.integers(0, max(n_y, 2), (1, m))
        try:
            models = [dlaccel.DeepNN([12, 16, 8, n_y], hidden_activation=hidden, seed=1, dtype=dtype, backend=b)
                      for b in ("numpy", backend)]
            for model in models:
                model.fit(X, Y, learning_rate=0.1, num_iterations=4, cost_every=1)
            message = compare_outputs(fitted(models[1]), fitted(models[0]), dtype)["message"]
        except Exception as exc:  # NaN from an unwritten output stops the fit as diverged
            message = f"{type(exc).__name__}: {exc}"
        if message:
            failures.append(f"fit DeepNN hidden={hidden} n_y={n_y} {dtype}: {message}")
    return failures


def test_fits_run_every_kernel():
    assert {hidden for hidden, _ in FITS} | {"softmax"} == set(ACTIVATIONS)
    assert {n_y > 1 for _, n_y in FITS} == {False, True}


def test_emulated_backend_passes_every_bench_check_and_fit(emulated):
    assert _bench_failures(emulated, "tiny") == []
    assert _fit_failures(emulated, 150) == []


def _skip_launch(grid, block, args):
    pass


def _launch_twice(kernel):
    def launch(grid, block, args):
        kernel(grid, block, args)
        kernel(grid, block, args)
    return launch


@pytest.mark.parametrize("kernel, broken, caught", [
    ("output_grad", lambda k: _skip_launch, ["deep on cupy", "shallow on cupy", "fit DeepNN"]),  # left as poison
    ("sgd_update", _launch_twice, ["fit DeepNN hidden=relu"]),  # wrong values, after the first step only
    ("act_backward_db_tanh", lambda k: _skip_launch, ["tanh_bwd on cupy", "fit DeepNN hidden=tanh"]),
])
def test_emulated_checks_catch_a_broken_kernel(emulated, monkeypatch, kernel, broken, caught):
    real = CupyBackend._function

    def function(self, filename, name, dtype):
        found = real(self, filename, name, dtype)
        return broken(found) if name == kernel else found

    monkeypatch.setattr(CupyBackend, "_function", function)
    failures = _bench_failures(emulated, "tiny") + _fit_failures(emulated, 150)
    assert all(any(what in f for f in failures) for what in caught), failures


# -- on a GPU -------------------------------------------------------------------------------------------


@pytest.fixture
def gpu():
    return dlaccel.get_backend("cupy")


@pytest.fixture
def poisoned(gpu, monkeypatch):
    import cupy

    monkeypatch.setattr(gpu, "_empty", lambda shape, dtype: cupy.full(shape, np.nan, dtype=dtype))
    return gpu


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n, n_prev, m", [(1, 3, 1), (10, 33, 8193), (257, 64, 1000), (70000, 2, 3)])
def test_gpu_fused_ops_match_numpy(poisoned, dtype, n, n_prev, m):
    ref, rng = NumpyBackend(), np.random.default_rng(m)
    host = [_rand(rng, s, dtype) for s in ((n_prev, m), (n, n_prev), (n, 1), (n, m))]
    A_prev, W, b, dA = (poisoned.asarray(x) for x in host)
    for activation in ACTIVATIONS:
        A, cache = poisoned.linear_activation_forward(A_prev, W, b, activation)
        A_ref, cache_ref = ref.linear_activation_forward(*host[:3], activation)
        _close(A.get(), A_ref, dtype)
        _close(cache.Z.get(), cache_ref.Z, dtype)
        # Backward from the GPU's own Z and A: a Z within rounding of 0 must not flip relu's mask.
        Z, A_host = cache.Z.get(), A.get()
        _close(poisoned.activation_backward(dA, cache.Z, activation).get(),
               ref.activation_backward(host[3], Z, activation), dtype)
        same_cache = LayerCache(host[0], host[1], host[2], Z, A_host)
        for g, w in zip(poisoned.linear_activation_backward(dA, cache, activation),
                        ref.linear_activation_backward(host[3], same_cache, activation)):
            _close(g.get(), w, dtype)
    for loss in LOSSES:
        AL = rng.uniform(0, 1, (n, m)).astype(dtype)
        Y = (rng.uniform(0, 1, (n, m)) > 0.5).astype(dtype)
        cost = poisoned.compute_cost(poisoned.asarray(AL), poisoned.asarray(Y), loss)
        assert cost == pytest.approx(ref.compute_cost(AL, Y, loss), rel=tol(dtype)["rtol"])
        _close(poisoned.output_backward(poisoned.asarray(AL), poisoned.asarray(Y), loss).get(), AL - Y, dtype)


@pytest.mark.gpu
def test_gpu_passes_every_bench_check_and_fit(poisoned):
    assert _bench_failures(poisoned, "quick") == []
    assert _fit_failures(poisoned, 5000) == []


@pytest.mark.gpu
def test_gpu_arrays_live_on_the_device(gpu):
    import cupy

    x = gpu.asarray(np.ones((2, 3), np.float32))
    assert isinstance(x, cupy.ndarray) and x.dtype == np.float32
    assert gpu.asarray(x) is x
    assert isinstance(gpu.to_numpy(x), np.ndarray)
    with pytest.raises(DeviceMismatchError, match="backend.to_numpy"):
        dlaccel.get_backend("numpy").activation_forward(x, "relu")
    with pytest.raises(DeviceMismatchError, match="backend.asarray"):
        gpu.activation_forward(np.ones((2, 3)), "relu")
    gpu.synchronize()


@pytest.mark.gpu
def test_gpu_model_round_trip_and_numpy_outputs():
    X, Y = _blobs()
    model = dlaccel.DeepNN([X.shape[0], 8, 1], seed=1, backend="numpy")
    before = model.parameters
    model.to("cupy")
    assert model.backend.name == "cupy"
    for k, p in model.parameters.items():
        assert type(p) is np.ndarray
        np.testing.assert_array_equal(p, before[k])
    model.fit(X, Y, learning_rate=0.1, num_iterations=20)
    assert type(model.predict(X)) is np.ndarray and type(model.predict_proba(X)) is np.ndarray
    trained = model.parameters
    model.to("numpy")
    for k, p in model.parameters.items():
        np.testing.assert_array_equal(p, trained[k])


def _blobs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 200))
    return X, (X[0:1] * X[1:2] > 0).astype(np.int64)


@pytest.mark.gpu
def test_gpu_fit_matches_numpy():
    X, Y = _blobs()
    models = [dlaccel.DeepNN([2, 16, 8, 1], seed=3, backend=name) for name in ("numpy", "cupy")]
    for model in models:
        model.fit(X, Y, learning_rate=0.05, num_iterations=50, cost_every=10)
    np.testing.assert_allclose([c for _, c in models[1].costs], [c for _, c in models[0].costs], rtol=1e-9)


@pytest.mark.gpu
def test_gpu_memory_does_not_grow_over_fit():
    import cupy

    pool = cupy.get_default_memory_pool()
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((64, 512)), rng.integers(0, 10, (1, 512))
    model = dlaccel.DeepNN([64, 128, 10], seed=0, dtype="float32", backend="cupy")
    model.fit(X, labels, learning_rate=0.01, num_iterations=5)
    cupy.cuda.Device().synchronize()
    used, held = pool.used_bytes(), pool.total_bytes()
    model.fit(X, labels, learning_rate=0.01, num_iterations=100)
    cupy.cuda.Device().synchronize()
    assert pool.used_bytes() <= used  # nothing kept alive across iterations
    # The pool reuses its blocks: a leak of even the gradients (40 KB a step) would add 4 MB here.
    assert pool.total_bytes() <= held + (1 << 20)


# -- the emulator itself: what real CUDA does that a sequential emulator would hide ------------------


def test_emulated_atomic_add_counts_every_block(emulated_kernels, tmp_path):
    """Every block adds into one slot: atomicAdd counts each block once. (A plain += there races;
    test_emulated_kernels_under_sanitizers shows that -fsanitize=thread reports it.)"""
    assert cuda_emulator.run_slot_sum(tmp_path, 16, atomic=True) == 16.0


def test_emulated_float32_flushes_subnormals_like_cupy(emulated):
    """CuPy compiles with -ftz=true: exp(-100) is subnormal in float32, so sigmoid(-100) is 0 on a
    GPU; float64 keeps it (NumPy keeps it in both)."""
    Z32, Z64 = np.full((1, 1), -100.0, np.float32), np.full((1, 1), -100.0)
    assert emulated.activation_forward(Z32, "sigmoid")[0, 0] == 0.0
    assert 0.0 < NumpyBackend().activation_forward(Z32, "sigmoid")[0, 0] < np.finfo(np.float32).tiny
    assert emulated.activation_forward(Z64, "sigmoid")[0, 0] == pytest.approx(np.exp(-100.0), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("sanitizer, workload", [("thread", "kernels"), ("address,undefined", "kernels"),
                                                 ("thread", "race")])
def test_emulated_kernels_under_sanitizers(emulated_kernels, tmp_path, sanitizer, workload):
    """Every kernel built with -fsanitize=thread (blocks run at once, so a data race between blocks
    is reported whatever the timing) and with -fsanitize=address,undefined (NumPy's buffers get
    redzones, so a read past an array's end is reported), each result checked against NumPy. The
    racy kernel shows that the race run would see a race."""
    found = cuda_emulator.sanitizer_command(sanitizer, tmp_path, workload)
    if isinstance(found, str):
        pytest.skip(found)
    cmd, env = found
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    if workload == "race":
        assert proc.returncode != 0 and "ThreadSanitizer: data race" in proc.stderr, proc.stderr[-3000:]
    else:
        assert proc.returncode == 0 and "workload done" in proc.stdout, proc.stderr[-3000:]
        assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-3000:]
