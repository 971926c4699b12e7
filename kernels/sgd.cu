// sgd.cu: the gradient-descent update of one parameter array, in place: P <- P - lr * G.
// One read of P and G and one write of P (an unfused `P -= lr * G` makes a temporary for lr * G).
// The compiler may contract it to one fused multiply-add: at most one rounding closer to exact.
//
// Launch convention: flat grid (see dlaccel_common.cuh), block 256.
// Instantiated types: float and double, one module each (-DDLACCEL_T=float|double).
// Synchronisation: none needed; each element is owned by one thread.
#include "dlaccel_common.cuh"

extern "C" __global__ void sgd_update(real* __restrict__ P, const real* __restrict__ G, real lr, index_t size) {
    flat_pairs(P, G, size, [=](index_t k, real p, real g) { P[k] = p - lr * g; });
}
