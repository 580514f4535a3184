#include "nn/linear.h"

#include <torch/torch.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/error.h"
#include "io/safetensors.h"
#include "nn/split_matmul.h"

namespace dt::nn {
namespace {

// The quantization's temporaries are freed into glibc's heap, which keeps them resident unless
// trimmed: without this a model's load peaks a third above its 8-bit weights.
void trim_heap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

void LinearImpl::store_8bit(WeightFormat format) {
  if (is_8bit()) throw Error("the weight is already stored in 8 bits");
  torch::NoGradGuard no_grad;
  RowQuantized q = quantize_rows(weight, format);
  weight.requires_grad_(false);
  const at::Tensor replaced = weight.data();
  weight.set_data(q.codes.to(weight.device()));
  release_mapped_pages(replaced);  // a weight read from a memory-mapped file leaves memory now
  weight_scale = register_buffer("weight_scale", q.scale.to(weight.device()));
  trim_heap();
}

void LinearImpl::expect_8bit(WeightFormat format) {
  if (is_8bit()) throw Error("the weight is already stored in 8 bits");
  if (format == WeightFormat::dense) throw Error("expect_8bit needs int8 or fp8");
  weight.requires_grad_(false);
  weight.set_data(at::empty(weight.sizes(), weight.options().dtype(format == WeightFormat::int8 ? at::kChar : at::kByte)));
  weight_scale = register_buffer("weight_scale", at::empty({weight.size(0)}, weight.options().dtype(at::kFloat)));
}

void LinearImpl::load_8bit(const StoredTensor& stored) {
  if (!is_8bit()) throw Error("load_8bit needs the 8-bit form declared (expect_8bit)");
  torch::NoGradGuard no_grad;
  const WeightFormat format = weight.scalar_type() == at::kChar ? WeightFormat::int8 : WeightFormat::fp8;
  RowQuantized q;
  if (stored.is_e4m3() && format == WeightFormat::fp8) {
    // 0x7F and 0xFF are E4M3's NaN; a scale must be finite for the values to be.
    if (stored.data.bitwise_and(0x7F).eq(0x7F).any().item<bool>()) throw Error("the E4M3 weight holds NaN codes");
    if (!at::isfinite(stored.row_scale).all().item<bool>()) throw Error("the E4M3 weight's scale is not finite");
    q = {stored.data.clone(), stored.row_scale.to(at::kFloat).clone()};
  } else {
    q = quantize_rows(stored.values(), format);
  }
  weight.set_data(q.codes.to(weight.device()));
  weight_scale.set_data(q.scale.to(weight.device()));
  release_mapped_pages(stored.data);
  trim_heap();
}

void store_linears_8bit(torch::nn::Module& root, WeightFormat format, Store8bit when) {
  for (const auto& item : root.named_modules()) {
    auto* linear = item.value()->as<LinearImpl>();
    if (!linear) continue;
    try {
      if (when == Store8bit::now) linear->store_8bit(format);
      else linear->expect_8bit(format);
    } catch (const Error& e) {
      throw Error("layer '" + item.key() + "': " + e.what());
    }
  }
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  at::Tensor y;
  if (is_8bit()) {
    y = linear_8bit(x, weight, weight_scale);
    if (bias.defined()) y.add_(bias);
  } else {
    y = split_linear(x, weight, bias);
  }
  if (!lora || !lora->state) return y;
  if (lora->merged) {
    if (!lora->state->enabled || lora->state->sample_scale.defined())
      throw Error("a merged LoRA cannot be switched off or scaled per sample; unmerge it first");
    return y;
  }
  if (!lora->state->enabled) return y;
  // The adapter computes in the activation dtype; its fp32 parameters receive fp32 gradients
  // through the casts. Scales apply to the rank-r activation, the smallest tensor on the way.
  at::Tensor h = torch::nn::functional::linear(x, lora->down.to(x.dtype()));
  if (lora->dropout > 0 && is_training()) h = torch::dropout(h, lora->dropout, /*train=*/true);
  h = h * lora->scale();
  const at::Tensor& s = lora->state->sample_scale;
  if (s.defined()) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape[0] = s.size(0);
    h = h * s.to(h.dtype()).view(shape);
  }
  // In place: the base linear's backward does not need its output.
  return y.add_(torch::nn::functional::linear(h, lora->up.to(x.dtype())));
}

}  // namespace dt::nn
