// sgd.cu: the gradient-descent update of one parameter array, in place: P <- P - lr * G.
// One read of P and G and one write of P (an unfused `P -= lr * G` makes a temporary for lr * G).
// The compiler may contract it to one fused multiply-add: at most one rounding closer to exact.
//
// Launch convention: flat grid (see dlaccel_common.cuh), block 256.
// Instantiated types: float and double, one module each (-DDLACCEL_T=float|double).
// Synchronisation: none needed; each element is owned by one thread.
#include "dlaccel_common.cuh"

extern "C" __global__ void sgd_update(real* __restrict__ P, const real* __restrict__ G, real lr, index_t size) {
    const index_t step = index_t(gridDim.x) * blockDim.x * DLACCEL_ITEMS;
    for (index_t k0 = index_t(blockIdx.x) * blockDim.x * DLACCEL_ITEMS + threadIdx.x; k0 < size; k0 += step) {
        real p[DLACCEL_ITEMS], g[DLACCEL_ITEMS];
#pragma unroll
        for (int u = 0; u < DLACCEL_ITEMS; ++u) {
            const index_t k = k0 + index_t(u) * blockDim.x;
            p[u] = k < size ? P[k] : real(0);
            g[u] = k < size ? G[k] : real(0);
        }
#pragma unroll
        for (int u = 0; u < DLACCEL_ITEMS; ++u) {
            const index_t k = k0 + index_t(u) * blockDim.x;
            if (k < size) P[k] = p[u] - lr * g[u];
        }
    }
}
