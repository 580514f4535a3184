// float32 products on the CPU, split by rows of their output across LibTorch's threads.
//
// LibTorch 1.13 hands a float32 product to the BLAS as one call, and Debian's OpenBLAS then runs
// it on one core (OPENBLAS_NUM_THREADS=1: its own threads would spin against LibTorch's), so the
// other cores idle through most of a float32 step (bench/RESULTS.md, "Products on every core").
// Each element of a product is the same sum in the same order whichever rows are computed with it,
// so a product split by rows — each part one BLAS call on a thread of LibTorch's pool — is bit for
// bit the whole product. Where the split is not known to be exact or does not pay (other dtypes
// and devices, a BLAS that threads itself, small products, inside a parallel region) these are
// LibTorch's own calls. Autograd sees the same products in its backward as LibTorch's would make.
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
