// Scaled dot-product attention shared by every model. LibTorch ≥ 2.0 has a fused kernel
// (at::scaled_dot_product_attention); older versions, and anyone who sets the switch, get the
// explicit formula softmax(q·kᵀ·scale + mask)·v with the softmax in float32.
#pragma once
#include <optional>

#include <ATen/Tensor.h>

namespace dt::nn {

// q: [B, H, Lq, D]; k, v: [B, Hkv, Lk, D] with H a multiple of Hkv (grouped-query attention: each
// key/value head serves H/Hkv consecutive query heads). key_mask: undefined (attend everywhere) or
// [B, Lk] bool, true = a real key. causal: query i sees keys j ≤ i (Lq == Lk). scale defaults to
// 1/√D. Returns [B, H, Lq, D] in q's dtype. A query row with no key to attend to gives NaN.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& key_mask = {}, bool causal = false,
                     std::optional<double> scale = std::nullopt);

// Process-wide switch: force the explicit formula even where the fused kernel exists (tests compare
// both paths; the explicit one is the reference's own formula).
void set_explicit_attention(bool on);
bool explicit_attention();

}  // namespace dt::nn
