#include "nn/attention.h"

#include <atomic>
#include <cmath>

#include <torch/torch.h>
#include <torch/version.h>

#include "nn/split_matmul.h"

namespace dt::nn {
namespace {

std::atomic<bool> force_explicit{false};

#define DT_HAS_FUSED_ATTENTION (TORCH_VERSION_MAJOR >= 2)
#define DT_FUSED_ATTENTION_HAS_SCALE (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))

// [B, Lk] key mask (+ causal) → boolean mask broadcastable to [B, H, Lq, Lk]; undefined if none.
at::Tensor combined_mask(const at::Tensor& key_mask, bool causal, int64_t lq, int64_t lk, c10::Device device) {
  at::Tensor mask;
  if (key_mask.defined()) mask = key_mask.to(device, at::kBool).view({key_mask.size(0), 1, 1, lk});
  if (causal) {
    at::Tensor tri = torch::ones({lq, lk}, torch::TensorOptions().dtype(at::kBool).device(device)).tril();
    mask = mask.defined() ? mask.logical_and(tri) : tri;
  }
  return mask;
}

// [..., n, m] · [..., m, p] with equal batch dimensions, folded into one batched product as
// torch::matmul folds it.
at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b) {
  std::vector<int64_t> shape = a.sizes().vec();
  shape.back() = b.size(-1);
  return split_bmm(a.reshape({-1, a.size(-2), a.size(-1)}), b.reshape({-1, b.size(-2), b.size(-1)})).view(shape);
}

// float32 scales the [B, H, Lq, Lk] scores (the shipped worlds were trained so and rebuild bit for
// bit). A 16-bit input is scaled on the [B, H, Lq, D] query instead and its scores stay 16-bit:
// softmax computes in float32 inside and rounds its output once, so converting the scores to
// float32 and the probabilities back — three passes over the largest tensor of the step, and
// their backward — bought no precision the bf16 product that follows keeps.
at::Tensor explicit_attention_formula(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& mask, double scale) {
  const bool full_precision = q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble;
  at::Tensor scores = full_precision ? batched_matmul(q, k.transpose(-2, -1)) * scale
                                     : batched_matmul(q * scale, k.transpose(-2, -1));  // [B, H, Lq, Lk]
  if (mask.defined()) scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
  return batched_matmul(torch::softmax(scores, -1), v);
}

}  // namespace

void set_explicit_attention(bool on) { force_explicit = on; }
bool explicit_attention() { return force_explicit; }

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_mask,
                     bool causal, std::optional<double> scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention expects [B, H, L, D] tensors");
  TORCH_CHECK(q.size(1) % k.size(1) == 0, "query heads must be a multiple of key/value heads");
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  at::Tensor key = k, value = v;
  if (k.size(1) != q.size(1)) {  // grouped-query attention: repeat each kv head for its query group
    key = k.repeat_interleave(q.size(1) / k.size(1), 1);
    value = v.repeat_interleave(q.size(1) / k.size(1), 1);
  }
  at::Tensor mask = combined_mask(key_mask, causal, q.size(2), key.size(2), q.device());
#if DT_HAS_FUSED_ATTENTION
  if (!force_explicit) {
#if DT_FUSED_ATTENTION_HAS_SCALE
    return at::scaled_dot_product_attention(q, key, value, mask, 0.0, /*is_causal=*/false, s);
#else
    const double default_scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    return at::scaled_dot_product_attention(q * (s / default_scale), key, value, mask, 0.0, false);
#endif
  }
#endif
  return explicit_attention_formula(q, key, value, mask, s);
}

}  // namespace dt::nn
