// dlaccel_common.cuh: what every dlaccel kernel shares (element type, activations, reductions, tiling).
//
// Instantiation: one module per element type. The Python loader compiles each .cu with
// -DDLACCEL_T=float or -DDLACCEL_T=double (and -DDLACCEL_LEAKY_SLOPE=<base.LEAKY_RELU_SLOPE>); it
// inlines this header into the source because NVRTC is given no include path (nvcc finds it next
// to the .cu file). No standard headers: NVRTC has none.
//
// Layout: every matrix is C-contiguous (n rows, m columns), examples as columns, so element (i, j)
// is at i * m + j. Indices are 64-bit: n * m may exceed 2^31.
//
// Launch convention shared by the row-tiled kernels ("rows grid"): blockIdx.y walks the rows with
// a grid-stride loop (so n may exceed the 65535 limit of gridDim.y); blockIdx.x picks one chunk of
// columns of that row; the threads of a block stride through the chunk, DLACCEL_ITEMS elements per
// thread per step, loads first, so each thread has several independent loads in flight. Adjacent
// threads touch adjacent columns: every access is coalesced. blockDim.x must be a multiple of 32
// and at most 1024 (the Python wrappers launch 256).
//
// "Flat grid": a 1-D grid-stride loop over all n * m elements; each step a block covers a tile of
// blockDim.x * DLACCEL_ITEMS consecutive elements, thread t taking t, t + blockDim.x, ... (coalesced).
// "Columns grid": one thread per column j, grid-stride over columns, looping down the rows; for a
// fixed row the threads of a warp touch consecutive addresses, so the column walk is coalesced too.
#pragma once

#ifndef DLACCEL_T
#error "compile with -DDLACCEL_T=float or -DDLACCEL_T=double"
#endif
#ifndef DLACCEL_LEAKY_SLOPE
#error "compile with -DDLACCEL_LEAKY_SLOPE=<slope> (dlaccel.backends.base.LEAKY_RELU_SLOPE)"
#endif

typedef DLACCEL_T real;  // the element type of this specialisation
typedef double acc_t;    // sums accumulate in double for both element types
typedef long long index_t;

#define DLACCEL_ITEMS 4

// Activation codes; the Python side names kernels by activation, not by these numbers.
#define ACT_SIGMOID 0
#define ACT_TANH 1
#define ACT_RELU 2
#define ACT_LEAKY_RELU 3
#define ACT_LINEAR 4

// Precision-matched math: expf/logf/tanhf for float, exp/log/tanh for double.
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_(double x) { return fabs(x); }
__device__ __forceinline__ index_t min_(index_t a, index_t b) { return a < b ? a : b; }

// sigmoid(z) = 1 / (1 + exp(-z)) for z >= 0 and exp(z) / (1 + exp(z)) for z < 0, written with
// one exp of -|z| <= 0, which never overflows (the same expression as the NumPy backend).
__device__ __forceinline__ real sigmoid_(real z) {
    const real e = exp_(-abs_(z));
    const real s = real(1) / (real(1) + e);
    return z >= real(0) ? s : e * s;
}

// A = g(Z), value for value what the NumPy backend gives: NaN propagates (divergence stays
// visible) and relu(-0) is +0, as np.maximum(Z, 0) has it.
template <int ACT>
__device__ __forceinline__ real act_forward(real z) {
    if (ACT == ACT_SIGMOID) return sigmoid_(z);
    if (ACT == ACT_TANH) return tanh_(z);
    if (ACT == ACT_RELU) return (z > real(0) || z != z) ? z : real(0);
    if (ACT == ACT_LEAKY_RELU) return z > real(0) ? z : z * real(DLACCEL_LEAKY_SLOPE);
    return z;  // ACT_LINEAR
}

// Whether g'(Z) is computed from A = g(Z) (sigmoid, tanh) or from Z (the relu family, linear).
template <int ACT>
__device__ __forceinline__ constexpr bool derivative_uses_A() {
    return ACT == ACT_SIGMOID || ACT == ACT_TANH;
}

// dZ = dA * g'(Z); `v` is A for sigmoid and tanh, Z otherwise.
//   sigmoid: g' = A (1 - A);  tanh: g' = 1 - A^2;  relu: g' = [Z > 0] (so relu'(0) = 0);
//   leaky_relu: g' = 1 if Z > 0 else slope;  linear: g' = 1.
// relu multiplies by the 0/1 mask instead of selecting, as NumPy's dA * (Z > 0) does: a NaN or
// inf in dA then gives NaN where Z <= 0 rather than vanishing into a 0.
template <int ACT>
__device__ __forceinline__ real act_backward(real dA, real v) {
    if (ACT == ACT_SIGMOID) return dA * (v * (real(1) - v));
    if (ACT == ACT_TANH) return dA * (real(1) - v * v);
    if (ACT == ACT_RELU) return dA * real(v > real(0) ? 1 : 0);
    if (ACT == ACT_LEAKY_RELU) return v > real(0) ? dA : dA * real(DLACCEL_LEAKY_SLOPE);
    return dA;  // ACT_LINEAR
}

// Sum over a warp with shuffles (all 32 lanes must be active).
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over the block; the result is valid in thread 0 only. Every thread of the block must call it
// (it has barriers). Deterministic: a fixed tree for a fixed blockDim. The leading barrier lets a
// block call it once per row in a loop: lane 0s overwrite warp_sums only after warp 0 has read the
// previous row's values.
__device__ __forceinline__ acc_t block_sum(acc_t v) {
    __shared__ acc_t warp_sums[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int nwarps = (blockDim.x + 31) >> 5;
        v = lane < nwarps ? warp_sums[lane] : acc_t(0);
        v = warp_sum(v);
    }
    return v;
}

// The columns [begin, end) of a row that this block handles in a rows grid. Chunk starts are
// multiples of 32 elements so that warps start on 128-byte (float) boundaries when rows do.
struct ColumnChunk {
    index_t begin, end;
};

__device__ __forceinline__ ColumnChunk column_chunk(index_t m) {
    index_t per = (m + gridDim.x - 1) / gridDim.x;
    per = (per + 31) & ~index_t(31);
    const index_t begin = min_(m, index_t(blockIdx.x) * per);
    return {begin, min_(m, begin + per)};
}

// Flat grid over two arrays of `size` elements: calls f(k, x[k], y[k]) for each k this thread owns.
// Each step loads all DLACCEL_ITEMS pairs before the first call, so their loads are in flight
// together. f may write x[k] or y[k] (each element is read once, by its owner, before f sees it):
// that is why x and y are not __restrict__ here.
template <class F>
__device__ __forceinline__ void flat_pairs(const real* x, const real* y, index_t size, F f) {
    const index_t step = index_t(gridDim.x) * blockDim.x * DLACCEL_ITEMS;
    for (index_t k0 = index_t(blockIdx.x) * blockDim.x * DLACCEL_ITEMS + threadIdx.x; k0 < size; k0 += step) {
        real a[DLACCEL_ITEMS], b[DLACCEL_ITEMS];
#pragma unroll
        for (int u = 0; u < DLACCEL_ITEMS; ++u) {
            const index_t k = k0 + index_t(u) * blockDim.x;
            a[u] = k < size ? x[k] : real(0);
            b[u] = k < size ? y[k] : real(0);
        }
#pragma unroll
        for (int u = 0; u < DLACCEL_ITEMS; ++u) {
            const index_t k = k0 + index_t(u) * blockDim.x;
            if (k < size) f(k, a[u], b[u]);
        }
    }
}
