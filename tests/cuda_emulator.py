"""A CPU emulator for the CUDA kernels in ``kernels/``, and a stand-in for CuPy built on NumPy.

The .cu sources are compiled as C++ with a shim that runs each block as real threads (one
std::thread per CUDA thread, std::barrier for __syncthreads and the warp shuffles), so the
indexing, tiling, grid-stride loops and reductions run as written. The cupy backend's own wrappers
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

from dlaccel.backends import cupy_gpu


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
#include <barrier>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
struct emu_dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;
static std::barrier<>* emu_block_barrier = nullptr;
static std::vector<std::barrier<>*> emu_warp_barriers;
static double emu_slots[1024];
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }
inline double __shfl_down_sync(unsigned, double v, int offset) {
    const unsigned t = threadIdx.x, lane = t & 31u;
    std::barrier<>* warp = emu_warp_barriers[t >> 5];
    emu_slots[t] = v;
    warp->arrive_and_wait();
    const double r = lane + offset < 32 ? emu_slots[t + offset] : v;
    warp->arrive_and_wait();
    return r;
}
static void emu_launch(unsigned gx, unsigned gy, unsigned bx, const std::function<void()>& body) {
    gridDim = {gx, gy, 1};
    blockDim = {bx, 1, 1};
    for (unsigned by = 0; by < gy; ++by) {
        for (unsigned bxi = 0; bxi < gx; ++bxi) {
            std::barrier<> block(bx);
            std::vector<std::unique_ptr<std::barrier<>>> warps;
            emu_warp_barriers.clear();
            for (unsigned w = 0; w < bx / 32; ++w) {
                warps.push_back(std::make_unique<std::barrier<>>(32));
                emu_warp_barriers.push_back(warps.back().get());
            }
            emu_block_barrier = &block;
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < bx; ++t)
                threads.emplace_back([&, t] { threadIdx = {t, 0, 0}; blockIdx = {bxi, by, 0}; body(); });
            for (auto& th : threads) th.join();
        }
    }
}
"""
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


def build_emulated(tmp: Path, filename: str, dtype) -> dict[str, EmulatedKernel]:
    options = [o for o in cupy_gpu.compile_options(dtype) if o.startswith("-D")]
    tu = tmp / f"{filename}.{np.dtype(dtype).name}.cpp"
    tu.write_text(_SHIM + cupy_gpu.kernel_source(filename))
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
    assert set(kernels) == set(cupy_gpu.kernel_names(filename))
    tu.write_text(tu.read_text() + "\n" + "\n".join(wrappers) + "\n")
    lib_path = tu.with_suffix(".so")
    build = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", *options,
                            "-o", str(lib_path), str(tu)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    lib = ctypes.CDLL(str(lib_path))
    return {name: EmulatedKernel(getattr(lib, f"emu_{name}"), params, dtype) for name, params in kernels.items()}


class KernelEmulator:
    """Builds each (file, dtype) module once, on first use, into ``tmp``."""

    def __init__(self, tmp: Path):
        self.tmp, self.modules = tmp, {}

    def __call__(self, filename: str, kernel: str, dtype) -> EmulatedKernel:
        key = (filename, np.dtype(dtype))
        if key not in self.modules:
            self.modules[key] = build_emulated(self.tmp, filename, dtype)
        return self.modules[key][kernel]


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
            getDevice=lambda: 0, memcpyAsync=memcpy_async, memcpyDeviceToDevice=3,
            getDeviceProperties=lambda device: {"name": b"CPU emulator", "multiProcessorCount": 2,
                                                "totalGlobalMem": 2**30, "major": 0, "minor": 0},
            runtimeGetVersion=lambda: 0, driverGetVersion=lambda: 0,
        ),
        nvrtc=types.SimpleNamespace(getVersion=lambda: (0, 0)),
    )
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    return fake
