// bias_activation.cu: the forward pass of one layer after the GEMM, fused into one pass:
//   Z <- Z + b (b broadcast across the m columns; Z written back, the backward pass needs it)
//   A <- g(Z)
// With b == nullptr the bias is skipped and Z is only read: that is activation_forward(Z).
//
// Launch convention:
//   bias_act_forward_<activation>  rows grid (see dlaccel_common.cuh): grid (chunks, rows), block 256;
//                                  activation in sigmoid, tanh, relu, leaky_relu, linear.
//   bias_softmax_forward           columns grid: grid (blocks), block 256; one thread per column.
// Instantiated types: float and double, one module each (-DDLACCEL_T=float|double).
// Synchronisation: none needed; every element is read and written by exactly one thread.
#include "dlaccel_common.cuh"

template <int ACT>
__device__ __forceinline__ void bias_act_forward(real* __restrict__ Z, const real* __restrict__ b,
                                                 real* __restrict__ A, index_t n, index_t m) {
    const ColumnChunk chunk = column_chunk(m);
    const index_t step = index_t(blockDim.x) * DLACCEL_ITEMS;
    for (index_t i = blockIdx.y; i < n; i += gridDim.y) {
        real* Zi = Z + i * m;
        real* Ai = A + i * m;
        const real bi = b != nullptr ? b[i] : real(0);
        for (index_t j0 = chunk.begin + threadIdx.x; j0 < chunk.end; j0 += step) {
            real z[DLACCEL_ITEMS];
#pragma unroll
            for (int u = 0; u < DLACCEL_ITEMS; ++u) {
                const index_t j = j0 + index_t(u) * blockDim.x;
                z[u] = j < chunk.end ? Zi[j] : real(0);
            }
#pragma unroll
            for (int u = 0; u < DLACCEL_ITEMS; ++u) {
                const index_t j = j0 + index_t(u) * blockDim.x;
                if (j < chunk.end) {
                    if (b != nullptr) {
                        z[u] += bi;
                        Zi[j] = z[u];
                    }
                    Ai[j] = act_forward<ACT>(z[u]);
                }
            }
        }
    }
}

#define DLACCEL_BIAS_ACT(name, ACT)                                                                   \
    extern "C" __global__ void bias_act_forward_##name(real* __restrict__ Z, const real* __restrict__ b, \
                                                       real* __restrict__ A, index_t n, index_t m) {   \
        bias_act_forward<ACT>(Z, b, A, n, m);                                                         \
    }

DLACCEL_BIAS_ACT(sigmoid, ACT_SIGMOID)
DLACCEL_BIAS_ACT(tanh, ACT_TANH)
DLACCEL_BIAS_ACT(relu, ACT_RELU)
DLACCEL_BIAS_ACT(leaky_relu, ACT_LEAKY_RELU)
DLACCEL_BIAS_ACT(linear, ACT_LINEAR)

// Softmax of each column of Z + b: A[:, j] = exp(z - max z) / sum exp(z - max z).
// Pass 1 adds the bias, stores Z and keeps a running maximum mx and running sum s of exp(z - mx)
// (online softmax: when mx grows to z, s is rescaled by exp(mx_old - z)); every exponent is <= 0,
// so nothing overflows. Pass 2 reads the column back (from L1/L2: the column was just written by
// this thread) and writes A. The sum accumulates in double. NaN in a column makes the column NaN.
extern "C" __global__ void bias_softmax_forward(real* __restrict__ Z, const real* __restrict__ b,
                                                real* __restrict__ A, index_t n, index_t m) {
    const index_t stride = index_t(gridDim.x) * blockDim.x;
    for (index_t j = index_t(blockIdx.x) * blockDim.x + threadIdx.x; j < m; j += stride) {
        real z = Z[j];
        if (b != nullptr) {
            z += b[0];
            Z[j] = z;
        }
        real mx = z;
        acc_t s = 1;
        for (index_t i = 1; i < n; ++i) {
            const index_t k = i * m + j;
            z = Z[k];
            if (b != nullptr) {
                z += b[i];
                Z[k] = z;
            }
            if (z > mx) {
                s = s * acc_t(exp_(mx - z)) + acc_t(1);
                mx = z;
            } else {
                s += acc_t(exp_(z - mx));
            }
        }
        const real total = real(s);
        for (index_t i = 0; i < n; ++i) {
            const index_t k = i * m + j;
            A[k] = exp_(Z[k] - mx) / total;
        }
    }
}
