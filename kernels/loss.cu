// loss.cu: the output layer's gradient and the two costs.
//   output_grad:      dZ = AL - Y (sigmoid + binary cross-entropy and softmax + cross-entropy share it)
//   bce_cost_partial: partial[block] = sum of  Y log P + (1 - Y) log(1 - P),  P = clip(AL, eps, 1 - eps)
//   ce_cost_partial:  partial[block] = sum of  Y log P,                       P = clip(AL, eps, 1)
// The host finishes the cost as -sum(partial) / m. eps is the dtype's machine epsilon (passed in);
// the clip keeps every log finite for saturated outputs and lets NaN through (comparisons, not
// fmin/fmax), so a diverged model still shows a NaN cost.
//
// Launch convention: flat grid (see dlaccel_common.cuh), block 256 (a multiple of 32: block_sum).
// The cost kernels write one partial per block: launch them with a fixed grid and no more blocks
// than the partial buffer holds; the result is deterministic (no atomics, fixed tree).
// Instantiated types: float and double, one module each (-DDLACCEL_T=float|double).
// Synchronisation: block_sum's barriers; every block reaches them (the loop bound is per thread,
// the reduction after it is not).
#include "dlaccel_common.cuh"

extern "C" __global__ void output_grad(const real* __restrict__ AL, const real* __restrict__ Y,
                                       real* __restrict__ dZ, index_t size) {
    flat_pairs(AL, Y, size, [=](index_t k, real a, real y) { dZ[k] = a - y; });
}

__device__ __forceinline__ real clip_(real a, real lo, real hi) { return a < lo ? lo : (a > hi ? hi : a); }

template <bool BINARY>
__device__ __forceinline__ void cost_partial(const real* __restrict__ AL, const real* __restrict__ Y,
                                             acc_t* __restrict__ partial, index_t size, real eps) {
    const real hi = BINARY ? real(1) - eps : real(1);
    acc_t s = 0;
    flat_pairs(AL, Y, size, [&](index_t, real a, real y) {
        const real p = clip_(a, eps, hi);
        real term = y * log_(p);
        if (BINARY) term += (real(1) - y) * log_(real(1) - p);
        s += acc_t(term);
    });
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

extern "C" __global__ void bce_cost_partial(const real* __restrict__ AL, const real* __restrict__ Y,
                                            acc_t* __restrict__ partial, index_t size, real eps) {
    cost_partial<true>(AL, Y, partial, size, eps);
}

extern "C" __global__ void ce_cost_partial(const real* __restrict__ AL, const real* __restrict__ Y,
                                           acc_t* __restrict__ partial, index_t size, real eps) {
    cost_partial<false>(AL, Y, partial, size, eps);
}
