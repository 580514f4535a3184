// Rotary position embeddings in the two layouts the supported models use.
//
// A head vector of dim D is rotated in D/2 planes; plane j of a token at position p turns by
// p·ω_j. Multi-axis RoPE (Z-Image, FLUX) splits the planes between axes: axis a owns d_a/2
// consecutive planes with ω = θ^(−2i/d_a), i < d_a/2, and its own position coordinate.
//   interleaved: plane j = (x[2j], x[2j+1])            (Z-Image, FLUX)
//   rotate-half: plane j = (x[j], x[j + D/2])          (Qwen3 and other LLMs)
#pragma once
#include <vector>

#include <ATen/Tensor.h>

namespace dt::nn {

// positions: [..., A] integer or float coordinates, one per axis; axes_dims: A even dims.
// Returns the rotation angles [..., Σd_a/2] in float64 (callers round as their reference does).
at::Tensor rope_angles(const at::Tensor& positions, const std::vector<int64_t>& axes_dims, double theta);

// x: [..., D]; cos, sin: broadcastable to [..., D/2]. Computed in float32, returned in x's dtype.
at::Tensor apply_rope_interleaved(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// x: [..., D]; cos, sin: broadcastable to [..., D/2]. Computed in x's dtype (as transformers does).
at::Tensor apply_rope_rotate_half(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace dt::nn
