// float32 products on the CPU, split by rows of their output across LibTorch's threads.
//
// LibTorch 1.13 hands a float32 product to the BLAS as one call, and Debian's OpenBLAS then runs
// it on one core (OPENBLAS_NUM_THREADS=1: its own threads would spin against LibTorch's), so the
// other cores idle through most of a float32 step (bench/RESULTS.md, "BLAS threads"). Here a
// product is split by rows of its output, each part one BLAS call on a thread of LibTorch's pool.
// Batched products split by batch, as torch::bmm calls the BLAS batch by batch: the same calls,
// the same bits. A row split is bit for bit the whole product where the BLAS gives a row the same
// sum whichever rows share its call (OpenBLAS's SkylakeX kernels); other kernel sets (Haswell's)
// round a row's sum by where it falls in the call's blocks, within fp32 rounding, so there the
// result depends on the thread count as LibTorch's own reductions do (docs/training.md, "What is
// bitwise"). Other dtypes and devices, a BLAS that threads itself, small products and calls inside
// a parallel region are LibTorch's own. Autograd's backward makes the products LibTorch's would.
#pragma once
#include <ATen/Tensor.h>

namespace dt::nn {

// Whether float32 products are split here: OpenBLAS on one thread, LibTorch on several.
bool products_split();
// a [B, M, K] · b [B, K, N], with its backward (torch::bmm's products, split across the batch)
at::Tensor split_bmm(const at::Tensor& a, const at::Tensor& b);
// x [..., in] · weightᵀ + bias, with its backward: torch::nn::functional::linear's products and
// roundings (a bias fused into the product where LibTorch fuses it), split by rows.
at::Tensor split_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace dt::nn
