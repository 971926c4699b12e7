// activation_backward.cu: the backward pass through an activation, fused with the bias gradient:
//   dZ = dA * g'(Z)                  (elementwise; g' from A for sigmoid/tanh, from Z otherwise)
//   partial[i, c] = sum over the columns of chunk c of row i of dZ
// and finalize_row_sums turns the partials into db = sum(dZ, axis=1) / m.
// With dZ == nullptr the product is summed but not stored (db of a given dZ: pass dA = dZ with
// the linear activation); with partial == nullptr nothing is summed (activation_backward alone).
// With v_is_Z != 0 for sigmoid/tanh, V holds Z and A = g(Z) is recomputed in registers.
//
// Launch convention:
//   act_backward_db_<activation>  rows grid (see dlaccel_common.cuh): grid (chunks, rows), block 256
//                                 (a multiple of 32: block_sum uses full-warp shuffles);
//                                 activation in sigmoid, tanh, relu, leaky_relu, linear.
//   finalize_row_sums             flat over the n rows: grid (blocks), block 256.
// Instantiated types: float and double, one module each (-DDLACCEL_T=float|double).
//
// Reduction strategy: a 2-D grid of (row, column chunk) blocks. Each thread accumulates its
// elements in double, the block reduces with warp shuffles and one shared-memory step
// (block_sum), and thread 0 writes the block's partial sum to its own slot: no atomics, so the
// result is deterministic (fixed chunks, fixed tree). A second, tiny kernel sums each row's partials
// in chunk order. Chunks are chosen on the host so that rows * chunks fills the GPU even when n is
// small (the output layer, or logistic regression with n = 1) and so that wide layers use one chunk.
// Synchronisation: within a block, the barriers of block_sum; between the two kernels, stream order.
#include "dlaccel_common.cuh"

template <int ACT>
__device__ __forceinline__ void act_backward_db(const real* __restrict__ dA, const real* __restrict__ V,
                                                real* __restrict__ dZ, acc_t* __restrict__ partial,
                                                index_t n, index_t m, int v_is_Z) {
    const ColumnChunk chunk = column_chunk(m);
    const index_t step = index_t(blockDim.x) * DLACCEL_ITEMS;
    const bool recompute_A = derivative_uses_A<ACT>() && v_is_Z != 0;
    for (index_t i = blockIdx.y; i < n; i += gridDim.y) {
        const index_t row = i * m;
        acc_t s = 0;
        for (index_t j0 = chunk.begin + threadIdx.x; j0 < chunk.end; j0 += step) {
            real d[DLACCEL_ITEMS], v[DLACCEL_ITEMS];
#pragma unroll
            for (int u = 0; u < DLACCEL_ITEMS; ++u) {
                const index_t j = j0 + index_t(u) * blockDim.x;
                const bool in = j < chunk.end;
                d[u] = in ? dA[row + j] : real(0);
                v[u] = (in && ACT != ACT_LINEAR) ? V[row + j] : real(0);
            }
#pragma unroll
            for (int u = 0; u < DLACCEL_ITEMS; ++u) {
                const index_t j = j0 + index_t(u) * blockDim.x;
                if (j < chunk.end) {
                    const real a_or_z = recompute_A ? act_forward<ACT>(v[u]) : v[u];
                    const real r = act_backward<ACT>(d[u], a_or_z);
                    if (dZ != nullptr) dZ[row + j] = r;
                    s += acc_t(r);
                }
            }
        }
        if (partial != nullptr) {  // uniform across the block: every thread reaches block_sum
            s = block_sum(s);
            if (threadIdx.x == 0) partial[i * gridDim.x + blockIdx.x] = s;
        }
    }
}

#define DLACCEL_ACT_BACKWARD(name, ACT)                                                                \
    extern "C" __global__ void act_backward_db_##name(const real* __restrict__ dA,                    \
                                                      const real* __restrict__ V, real* __restrict__ dZ, \
                                                      acc_t* __restrict__ partial, index_t n, index_t m, \
                                                      int v_is_Z) {                                    \
        act_backward_db<ACT>(dA, V, dZ, partial, n, m, v_is_Z);                                        \
    }

DLACCEL_ACT_BACKWARD(sigmoid, ACT_SIGMOID)
DLACCEL_ACT_BACKWARD(tanh, ACT_TANH)
DLACCEL_ACT_BACKWARD(relu, ACT_RELU)
DLACCEL_ACT_BACKWARD(leaky_relu, ACT_LEAKY_RELU)
DLACCEL_ACT_BACKWARD(linear, ACT_LINEAR)

// db[i] = scale * sum_c partial[i, c], summed in chunk order (deterministic), rounded once to real.
extern "C" __global__ void finalize_row_sums(const acc_t* __restrict__ partial, real* __restrict__ db,
                                             index_t n, index_t chunks, acc_t scale) {
    const index_t stride = index_t(gridDim.x) * blockDim.x;
    for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        acc_t s = 0;
        for (index_t c = 0; c < chunks; ++c) s += partial[i * chunks + c];
        db[i] = real(s * scale);
    }
}
