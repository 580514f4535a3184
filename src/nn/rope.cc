#include "nn/rope.h"

#include <torch/torch.h>

namespace dt::nn {

at::Tensor rope_angles(const at::Tensor& positions, const std::vector<int64_t>& axes_dims, double theta) {
  TORCH_CHECK(positions.size(-1) == static_cast<int64_t>(axes_dims.size()), "one position per RoPE axis");
  auto f64 = torch::TensorOptions().dtype(at::kDouble).device(positions.device());
  std::vector<at::Tensor> per_axis;
  for (size_t a = 0; a < axes_dims.size(); ++a) {
    const int64_t d = axes_dims[a];
    TORCH_CHECK(d % 2 == 0, "RoPE axis dims must be even");
    at::Tensor omega = 1.0 / torch::pow(theta, torch::arange(0, d, 2, f64) / static_cast<double>(d));  // [d/2]
    at::Tensor pos = positions.select(-1, static_cast<int64_t>(a)).to(at::kDouble).unsqueeze(-1);
    per_axis.push_back(pos * omega);
  }
  return torch::cat(per_axis, -1);
}

at::Tensor apply_rope_interleaved(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  // One complex product per plane, as the reference writes it: one pass instead of six
  // element-wise ones and a stack. LibTorch's vectorised complex product rounds each component as
  // (re·c − im·s, re·s + im·c) does, forward and backward, where a head's planes fill whole pairs
  // of vectors (head dims that are multiples of 32; a shorter tail may fuse a multiply-add).
  auto shape = x.sizes().vec();
  shape.back() /= 2;
  shape.push_back(2);
  at::Tensor planes = at::view_as_complex(x.to(at::kFloat).contiguous().view(shape));
  at::Tensor turned = planes * at::complex(cos.to(at::kFloat), sin.to(at::kFloat));
  return at::view_as_real(turned).flatten(-2).to(x.scalar_type());
}

at::Tensor apply_rope_rotate_half(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  at::Tensor c = cos.to(x.scalar_type()), s = sin.to(x.scalar_type());
  return torch::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}

}  // namespace dt::nn
