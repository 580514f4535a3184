// 8-bit storage of frozen Linear weights (model.weight_dtype): each output row of a weight W [out, in]
// is kept as 8-bit codes q with one float32 scale s_o, W ≈ s_o · value(q), and the layer computes
// in the model's dtype. Per-row scales commute with the matrix product — (x·value(q)ᵀ)·diag(s) —
// so a call converts the codes to the compute dtype (one cheap pass) and scales the output, never
// the [out, in] matrix. The backward pass decodes the codes again instead of keeping a decoded
// copy, so a step holds the 8-bit weights and no full-precision one — except under gradient
// checkpointing, where the recompute of one block keeps its decoded weights for that block's
// backward, which follows at once (two decodes per step instead of three).
#pragma once
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/ScalarType.h>

#include "core/dtype.h"

namespace dt::nn {

// E4M3 codes of x (any shape, float): nearest value, ties to the even code, beyond ±448 saturated.
// Non-finite values are refused.
at::Tensor e4m3_encode(const at::Tensor& x);
// The values of E4M3 codes (uint8, any shape; NaN codes 0x7F / 0xFF are not expected) in `dtype`,
// exact: every E4M3 value is a bfloat16.
at::Tensor e4m3_decode(const at::Tensor& codes, c10::ScalarType dtype);

struct RowQuantized {
  at::Tensor codes;  // [out, in]: int8 for int8, uint8 E4M3 codes for fp8
  at::Tensor scale;  // [out] float32
};
// W [out, in] (finite; any float dtype) in `format` (int8 or fp8), computed in float32.
RowQuantized quantize_rows(const at::Tensor& weight, WeightFormat format);
// The values of the codes times their row scales, in float32 (what the layer multiplies by).
at::Tensor dequantize_rows(const at::Tensor& codes, const at::Tensor& scale);

// x·Wᵀ for W stored as `codes` and `scale`, in x's dtype; differentiable in x only.
at::Tensor linear_8bit(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scale);

}  // namespace dt::nn
