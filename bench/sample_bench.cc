// Sampler choices, each measured against its alternative in the same run on one Z-Image model:
//   CFG: the conditional and negative prompt as one forward of batch 2 vs two forwards of batch 1;
//   LoRA files: merged into the weights (what `deltatrain sample` does) vs kept as adapters.
// Times are per sampler step (one velocity evaluation, plus the Euler update).
//
//   build/sample_bench [--dim 512] [--layers 4] [--image-tokens 256] [--caption-tokens 64]
//                      [--rank 16] [--repeats 3] [--threads N] [--dtype fp32|bf16]
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench_util.h"
#include "core/runtime.h"
#include "lora/adapters.h"
#include "models/zimage/family.h"
#include "sample/sampler.h"

namespace {

using dt::bench::best_time;
using dt::bench::option;

}  // namespace

int main(int argc, char** argv) {
  const int64_t dim = std::stoll(option(argc, argv, "--dim", "512"));
  const int64_t layers = std::stoll(option(argc, argv, "--layers", "4"));
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", "256"));
  const int64_t caption_tokens = std::stoll(option(argc, argv, "--caption-tokens", "64"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "3"));
  const std::string dtype_name = option(argc, argv, "--dtype", "fp32");
  if (const std::string t = option(argc, argv, "--threads", ""); !t.empty()) setenv("DT_THREADS", t.c_str(), 1);
  dt::init_runtime();
  const at::ScalarType dtype = dtype_name == "bf16" ? at::kBFloat16 : at::kFloat;

  dt::ZImageConfig c;
  c.dim = dim;
  c.n_heads = dim / 128;
  c.n_kv_heads = c.n_heads;
  c.n_layers = layers;
  c.n_refiner_layers = 2;
  c.cap_feat_dim = 2560;
  c.axes_dims = {32, 48, 48};
  torch::manual_seed(0);
  dt::ZImageTransformer model(c);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0, 0.02).requires_grad_(false);
  }
  model->to(dtype);
  model->eval();
  dt::zimage::ZImageDenoiser denoiser(model, {});

  const int64_t side = static_cast<int64_t>(std::sqrt(static_cast<double>(image_tokens))) * 2;  // latent side (2×2 patches)
  const at::Tensor x = dt::sample_noise(1, {16, side, side}).unsqueeze(0).to(dtype);
  const at::Tensor pos = torch::randn({caption_tokens, c.cap_feat_dim}).to(dtype);
  const at::Tensor neg = torch::randn({caption_tokens / 4, c.cap_feat_dim}).to(dtype);
  const at::Tensor sigma = torch::full({1}, 0.5f);
  torch::NoGradGuard no_grad;

  auto step = [&](const at::Tensor& v) { return dt::euler_step(x.to(at::kFloat), v, 0.5, 0.45); };
  const double batched = best_time(repeats, [&] {
    const at::Tensor v = denoiser.velocity(torch::cat({x, x}), torch::cat({sigma, sigma}), {pos, neg});
    step(dt::guided_velocity(v.narrow(0, 0, 1), v.narrow(0, 1, 1), 5.0));
  });
  const double separate = best_time(repeats, [&] {
    const at::Tensor vp = denoiser.velocity(x, sigma, {pos}), vn = denoiser.velocity(x, sigma, {neg});
    step(dt::guided_velocity(vp, vn, 5.0));
  });

  const double plain = best_time(repeats, [&] { step(denoiser.velocity(x, sigma, {pos})); });
  const auto chosen = dt::lora::select_layers(denoiser.module(), {"attn-mlp", {}, {}}, dt::zimage_family().lora_presets());
  dt::lora::Adapters adapters =
      dt::lora::Adapters::create(denoiser.module(), denoiser.lora_state(), chosen, {rank, static_cast<double>(rank), 0.0, 1});
  const double adapter = best_time(repeats, [&] { step(denoiser.velocity(x, sigma, {pos})); });
  adapters.merge();
  const double merged = best_time(repeats, [&] { step(denoiser.velocity(x, sigma, {pos})); });

  std::printf("Z-Image dim %lld, %lld layers + 2+2 refiners, %lld image + %lld caption tokens, %s, %d threads\n",
              static_cast<long long>(dim), static_cast<long long>(layers), static_cast<long long>(image_tokens),
              static_cast<long long>(caption_tokens), dtype_name.c_str(), at::get_num_threads());
  std::printf("| measured in one run | ms per step | ratio |\n| --- | ---: | ---: |\n");
  std::printf("| CFG, one forward of batch 2 vs two of batch 1 | %.1f vs %.1f | %.2f× |\n", batched * 1e3, separate * 1e3,
              separate / batched);
  std::printf("| LoRA rank %lld attn-mlp: adapters vs merged into the weights | %.1f vs %.1f | %.2f× |\n",
              static_cast<long long>(rank), adapter * 1e3, merged * 1e3, adapter / merged);
  std::printf("| merged LoRA vs no LoRA (should be 1) | %.1f vs %.1f | %.2f× |\n", merged * 1e3, plain * 1e3, merged / plain);
  return 0;
}
