"""A CPU emulator for the CUDA kernels in ``kernels/``, and a stand-in for CuPy built on NumPy.

The .cu sources are compiled as C++ with a shim that runs every block of a launch at once as real
threads (one std::thread per CUDA thread, std::barrier for __syncthreads and the warp shuffles,
per-block __shared__ memory, atomicAdd, float32 flush-to-zero as CuPy compiles), so the indexing,
tiling, grid-stride loops and reductions run as written, and races between blocks are real ones
(reported under -fsanitize=thread: see SANITIZERS). The cupy backend's own wrappers
drive them through the stand-in (NumPy arrays), and every kernel argument is checked against the
C signature: on a GPU a wrong scalar type is silent garbage.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import time
import types
from pathlib import Path

import numpy as np

from dlaccel.backends import _cuda, cupy_gpu
from dlaccel.backends.cupy_gpu import CupyBackend


def unavailable_reason() -> str | None:
    """Why the emulator cannot be built here, or None."""
    if shutil.which("g++") is None:
        return "g++ is not on the PATH: no CPU emulation of the kernels"
    probe = subprocess.run(["g++", "-std=c++20", "-x", "c++", "-fsyntax-only", "-"], input="#include <barrier>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "g++ lacks C++20 <barrier>: no CPU emulation of the kernels"
    return None


_SHIM = r"""
#include <math.h>
#include <string.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
struct emu_dim3 { unsigned x = 1, y = 1, z = 1; };
// What the threads of one block share; one per block, so that blocks can run at the same time.
struct emu_block {
    explicit emu_block(unsigned threads) : sync(threads), slots(threads) {
        for (unsigned w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
    }
    std::barrier<> sync;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<double> slots;  // __shfl_down_sync's exchange
    std::mutex shared_lock;
    std::map<int, std::unique_ptr<unsigned char[]>> shared;  // __shared__ variables, by declaration
};
static thread_local emu_dim3 threadIdx, blockIdx;
static thread_local emu_block* emu_this_block = nullptr;
static emu_dim3 blockDim, gridDim;
static unsigned long long emu_launch_count = 0;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
// `__shared__ T name[N];` is rewritten (see build_emulated) to a reference into this block's copy,
// filled with 0xff bytes (NaN as a double or float) as unwritten shared memory must not be read.
template <class T, int ID>
T& emu_shared() {
    emu_block* b = emu_this_block;
    std::lock_guard<std::mutex> hold(b->shared_lock);
    std::unique_ptr<unsigned char[]>& p = b->shared[ID];
    if (!p) {
        p.reset(new unsigned char[sizeof(T)]);
        memset(p.get(), 0xff, sizeof(T));
    }
    return *reinterpret_cast<T*>(p.get());
}
inline void __syncthreads() { emu_this_block->sync.arrive_and_wait(); }
inline double __shfl_down_sync(unsigned, double v, int offset) {
    const unsigned t = threadIdx.x, lane = t & 31u;
    emu_block* b = emu_this_block;
    std::barrier<>* warp = b->warps[t >> 5].get();
    b->slots[t] = v;
    warp->arrive_and_wait();
    const double r = lane + offset < 32 ? b->slots[t + offset] : v;
    warp->arrive_and_wait();
    return r;
}
// CUDA's atomicAdd (float, double, int, ...): a real atomic read-modify-write, returning the old value.
template <class T>
inline T atomicAdd(T* address, T v) { return std::atomic_ref<T>(*address).fetch_add(v); }
// CuPy compiles with -ftz=true: float arithmetic flushes subnormal inputs and results to zero. The
// float modules (EMU_FTZ) set the SSE flags that do the same on the CPU (they also cover the double
// accumulators there, whose exact sums of floats never come near double's subnormal range).
static void emu_thread_start() {
#if defined(EMU_FTZ) && defined(__SSE__)
    _mm_setcsr(_mm_getcsr() | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
#endif
}
// Every block of the grid runs at once, as on a GPU with room for them all, and their threads are
// started in a shuffled block order: a kernel whose blocks race (a plain += into a slot that several
// blocks share) loses updates or shows under -fsanitize=thread, instead of being summed in order.
static void emu_launch(unsigned gx, unsigned gy, unsigned bx, const std::function<void()>& body) {
    gridDim = {gx, gy, 1};
    blockDim = {bx, 1, 1};
    std::vector<emu_dim3> order;
    for (unsigned by = 0; by < gy; ++by)
        for (unsigned bxi = 0; bxi < gx; ++bxi) order.push_back({bxi, by, 0});
    std::mt19937_64 rng(0x9e3779b97f4a7c15ull + emu_launch_count++);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::unique_ptr<emu_block>> blocks;
    std::vector<std::thread> threads;
    for (const emu_dim3& id : order) {
        blocks.push_back(std::make_unique<emu_block>(bx));
        emu_block* block = blocks.back().get();
        for (unsigned t = 0; t < bx; ++t)
            threads.emplace_back([&body, block, id, t] {
                emu_thread_start();
                threadIdx = {t, 0, 0};
                blockIdx = id;
                emu_this_block = block;
                body();
            });
    }
    for (auto& th : threads) th.join();
}
"""
_SHARED = re.compile(r"__shared__\s+(\w+)\s+(\w+)\s*\[(\w+)\]\s*;")
EMU_THREADS = 64  # 2 warps per block keeps the emulator quick and still exercises block_sum
_SIGNATURE = re.compile(r'extern "C" void (\w+)\s*\(([^)]*)\)\s*\{')


def _ctype(c_type: str, dtype) -> tuple:
    if "*" in c_type:
        return ctypes.c_void_p, None
    scalar = {"index_t": np.int64, "int": np.int32, "acc_t": np.float64, "real": np.dtype(dtype).type}[c_type]
    return np.ctypeslib.as_ctypes_type(scalar), scalar


class EmulatedKernel:
    def __init__(self, function, params, dtype):
        self.function, self.params = function, params
        self.types = [_ctype(c_type, dtype) for c_type, _ in params]
        function.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint] + [t for t, _ in self.types]
        function.restype = None

    def __call__(self, grid, block, args):
        assert len(args) == len(self.params), f"{len(args)} arguments for {self.params}"
        converted = []
        for arg, (c_type, name), (ct, scalar) in zip(args, self.params, self.types):
            if ct is ctypes.c_void_p:
                if isinstance(arg, np.ndarray):
                    assert arg.flags.c_contiguous, f"{name} is not C-contiguous"
                    converted.append(arg.ctypes.data)
                else:
                    assert type(arg) is np.uint64 and arg == 0, f"pointer {name} got {arg!r}"
                    converted.append(None)
            else:
                assert type(arg) is scalar, f"{c_type} {name} got {type(arg).__name__}"
                converted.append(arg.item())
        grid = tuple(grid) + (1,) * (3 - len(grid))
        assert grid[2] == 1 and block == (EMU_THREADS,)
        self.function(grid[0], grid[1], block[0], *converted)


def emulated_source(filename: str) -> str:
    """The kernel source with each ``__shared__`` array made per block (see emu_shared)."""
    source, count = _SHARED.subn(r"\1 (&\2)[\3] = emu_shared<\1[\3], __COUNTER__>();", _cuda.kernel_source(filename))
    assert "__shared__" not in source, f"{filename}: a __shared__ declaration the emulator cannot rewrite"
    return source


def build_emulated(tmp: Path, filename: str, dtype, flags: tuple[str, ...] = (),
                   source: str | None = None) -> dict[str, EmulatedKernel]:
    """Compiles ``filename`` from kernels/ (or the CUDA ``source`` given, named ``filename``)."""
    options = [o for o in _cuda.compile_options(dtype) if o.startswith("-D")]
    if np.dtype(dtype) == np.float32:
        options.append("-DEMU_FTZ")
    tu = tmp / f"{filename}.{np.dtype(dtype).name}.cpp"
    tu.write_text(_SHIM + (emulated_source(filename) if source is None else source))
    pre = subprocess.run(["g++", "-std=c++20", "-E", "-P", *options, str(tu)], capture_output=True, text=True)
    assert pre.returncode == 0, pre.stderr
    kernels = {}
    wrappers = []
    for name, params in _SIGNATURE.findall(pre.stdout):
        parsed = []
        for param in params.split(","):
            tokens = param.replace("*", " * ").replace("__restrict", " ").split()
            c_type = "".join(t for t in tokens[:-1] if t != "const")
            parsed.append((c_type.replace("*", "") + ("*" if "*" in c_type else ""), tokens[-1]))
        kernels[name] = parsed
        call = ", ".join(p for _, p in parsed)
        wrappers.append(f'extern "C" void emu_{name}(unsigned gx, unsigned gy, unsigned bx, {params}) '
                        f"{{ emu_launch(gx, gy, bx, [&] {{ {name}({call}); }}); }}")
    assert source is not None or set(kernels) == set(_cuda.kernel_names(filename))
    tu.write_text(tu.read_text() + "\n" + "\n".join(wrappers) + "\n")
    lib_path = tu.with_suffix(".so")
    build = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", *flags, *options,
                            "-o", str(lib_path), str(tu)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    lib = ctypes.CDLL(str(lib_path))
    return {name: EmulatedKernel(getattr(lib, f"emu_{name}"), params, dtype) for name, params in kernels.items()}


class KernelEmulator:
    """Builds each (file, dtype) module once, on first use, into ``tmp``."""

    def __init__(self, tmp: Path, flags: tuple[str, ...] = ()):
        self.tmp, self.flags, self.modules = tmp, flags, {}

    def __call__(self, filename: str, kernel: str, dtype) -> EmulatedKernel:
        key = (filename, np.dtype(dtype))
        if key not in self.modules:
            self.modules[key] = build_emulated(self.tmp, filename, dtype, self.flags)
        return self.modules[key][kernel]


def patch_backend(setattr_, kernels: KernelEmulator) -> None:
    """Makes every CupyBackend run its kernels on ``kernels``, on NumPy arrays, with kernel outputs
    poisoned with NaN. ``setattr_`` is pytest's ``monkeypatch.setattr`` (or plain ``setattr``)."""
    setattr_(cupy_gpu, "cupy", numpy_cupy())
    setattr_(CupyBackend, "xp", np)
    setattr_(_cuda, "THREADS", EMU_THREADS)
    setattr_(_cuda, "MAX_GRID_Y", 3)  # rows beyond gridDim.y take the grid-stride path
    setattr_(CupyBackend, "_function", lambda self, filename, kernel, dtype: kernels(filename, kernel, dtype))
    setattr_(CupyBackend, "_sm_count", lambda self: 2)
    setattr_(CupyBackend, "_empty", lambda self, shape, dtype: np.full(shape, np.nan, dtype=dtype))


class _DeviceArray(np.ndarray):
    """An array whose ``.data.ptr`` is its address, like a CuPy array's."""

    @property
    def data(self):  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.ctypes.data)


class _Event:
    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass


def numpy_cupy() -> types.ModuleType:
    """A module with the part of CuPy's API that the cupy backend and benchmarks/gpu_check.py use,
    on NumPy arrays in host memory (so "device" pointers are host addresses)."""
    fake = types.ModuleType("cupy")
    for name in ("ndarray", "empty", "full", "zeros", "asarray", "ascontiguousarray", "copyto", "tanh", "float32",
                 "float64"):
        setattr(fake, name, getattr(np, name))
    fake.arange = lambda *args, **kwargs: np.arange(*args, **kwargs).view(_DeviceArray)
    fake.empty_like = lambda a, **kwargs: np.empty_like(a, **kwargs).view(_DeviceArray)
    fake.__version__ = "numpy-stand-in"
    fake.asnumpy = lambda a: np.array(a, copy=True)

    class RandomState:
        def __init__(self, seed: int):
            self.rng = np.random.default_rng(seed)

        def standard_normal(self, shape, dtype=np.float64):
            return self.rng.standard_normal(shape, dtype=dtype)

        def random_sample(self, shape, dtype=np.float64):
            return self.rng.random(shape, dtype=dtype)

    fake.random = types.SimpleNamespace(RandomState=RandomState)

    class Device:
        def __init__(self, device: int = 0):
            self.attributes = {"MultiProcessorCount": 2}

        def synchronize(self) -> None:
            pass

    def memcpy_async(dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    fake.cuda = types.SimpleNamespace(
        Device=Device, Event=_Event,
        get_elapsed_time=lambda start, end: 1e3 * (end.t - start.t),
        get_current_stream=lambda: types.SimpleNamespace(ptr=0),
        runtime=types.SimpleNamespace(
            getDevice=lambda: 0, getDeviceCount=lambda: 1, memcpyAsync=memcpy_async, memcpyDeviceToDevice=3,
            getDeviceProperties=lambda device: {"name": b"CPU emulator", "multiProcessorCount": 2,
                                                "totalGlobalMem": 2**30, "major": 0, "minor": 0},
            runtimeGetVersion=lambda: 0, driverGetVersion=lambda: 0,
        ),
        nvrtc=types.SimpleNamespace(getVersion=lambda: (0, 0)),
    )
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    return fake


# -- sanitizers: the kernels built with -fsanitize=..., driven in a child process ------------------

SANITIZERS = {
    # name: (g++ flags, runtimes to preload into Python, the dtype run, environment)
    "thread": (("-fsanitize=thread", "-g"), ("libtsan.so",), np.float64,
               {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}),
    "address,undefined": (("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"),
                          ("libasan.so", "libubsan.so"), np.float32,
                          {"ASAN_OPTIONS": "detect_leaks=0 halt_on_error=1"}),
}

# A kernel whose blocks all add into one slot: racy with `+=`, exact with atomicAdd.
RACE_SOURCE = """
typedef long long index_t;
extern "C" __global__ void slot_sum(double* __restrict__ slot, int atomic) {
    if (threadIdx.x == 0) {
        if (atomic) atomicAdd(slot, 1.0);
        else *slot += 1.0;
    }
}
"""


def sanitizer_command(name: str, tmp: Path, workload: str = "kernels") -> tuple[list[str], dict] | str:
    """The command and environment that run ``workload`` under sanitizer ``name``, or why it can't."""
    import os
    import sys

    flags, runtimes, _, env = SANITIZERS[name]
    paths = []
    for runtime in runtimes:
        found = subprocess.run(["g++", "-print-file-name=" + runtime], capture_output=True, text=True).stdout.strip()
        if not Path(found).is_absolute() or not Path(found).exists():
            return f"g++ has no {runtime}: no -fsanitize={name} run"
        paths.append(found)
    env = {**os.environ, **env, "LD_PRELOAD": " ".join(paths), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    probe = subprocess.run([sys.executable, "-c", "pass"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        return f"Python does not start with {runtimes[0]} preloaded: {probe.stderr.strip()[-200:]}"
    return [sys.executable, "-m", "tests.cuda_emulator", name, workload, str(tmp)], env


def _run_kernels(name: str, tmp: Path) -> None:
    """Every kernel, through the backend's own wrappers, on shapes with ragged tails, several
    column chunks and more rows than gridDim.y; each result checked against NumPy."""
    from dlaccel.backends.base import ACTIVATIONS, LOSSES
    from dlaccel.backends.numpy_backend import NumpyBackend

    flags, _, dtype, _ = SANITIZERS[name]
    patch_backend(setattr, KernelEmulator(tmp, flags))
    be, ref, rng = CupyBackend(), NumpyBackend(), np.random.default_rng(0)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for n, n_prev, m in [(7, 4, 37), (2, 3, 600)]:
        A_prev, W, b, dA = (rng.standard_normal(s).astype(dtype) for s in ((n_prev, m), (n, n_prev), (n, 1), (n, m)))
        for activation in ACTIVATIONS:
            A, cache = be.linear_activation_forward(A_prev, W, b, activation)
            A_ref, cache_ref = ref.linear_activation_forward(A_prev, W, b, activation)
            np.testing.assert_allclose(A, A_ref, rtol=rtol, atol=rtol)
            np.testing.assert_allclose(be.activation_backward(dA, cache_ref.Z, activation),
                                       ref.activation_backward(dA, cache_ref.Z, activation), rtol=rtol, atol=rtol)
            for g, w in zip(be.linear_activation_backward(dA, cache, activation),
                            ref.linear_activation_backward(dA, cache_ref, activation)):
                np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
        AL = rng.uniform(0, 1, (n, m)).astype(dtype)
        Y = (rng.uniform(0, 1, (n, m)) > 0.5).astype(dtype)
        for loss in LOSSES:
            assert abs(be.compute_cost(AL, Y, loss) - ref.compute_cost(AL, Y, loss)) <= rtol * 10 * (1 + abs(
                ref.compute_cost(AL, Y, loss))), loss
            np.testing.assert_allclose(be.output_backward(AL, Y, loss), AL - Y, rtol=rtol, atol=rtol)
        P, G = dA.copy(), A_prev[:1].repeat(n, axis=0).copy()
        want = P - dtype(0.1) * G
        be.update_parameters({"W": P}, {"dW": G}, 0.1)
        np.testing.assert_allclose(P, want, rtol=rtol, atol=rtol)


def run_slot_sum(tmp: Path, blocks: int, atomic: bool, flags: tuple[str, ...] = ()) -> float:
    """RACE_SOURCE's kernel over ``blocks`` blocks: ``blocks`` when the additions are atomic."""
    kernel = build_emulated(tmp, "slot_sum.cu", np.float64, flags, source=RACE_SOURCE)["slot_sum"]
    slot = np.zeros(1)
    kernel((blocks,), (EMU_THREADS,), (slot, np.int32(atomic)))
    return float(slot[0])


if __name__ == "__main__":  # python -m tests.cuda_emulator SANITIZER kernels|race TMP (see sanitizer_command)
    import sys

    sanitizer, workload, directory = sys.argv[1:4]
    if workload == "kernels":
        _run_kernels(sanitizer, Path(directory))
    else:
        print(run_slot_sum(Path(directory), 8, workload == "atomic", SANITIZERS[sanitizer][0]))
    print("workload done")
