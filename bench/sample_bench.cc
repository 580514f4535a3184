// Sampler choices, each measured against its alternative in the same run on one Z-Image model:
//   CFG: the conditional and negative prompt as one forward of batch 2 vs two forwards of batch 1;
//   LoRA files: merged into the weights (what `deltatrain sample` does) vs kept as adapters.
// Times are per sampler step (one velocity evaluation, plus the Euler update).
//
//   build/sample_bench [--dim 512] [--layers 4] [--image-tokens 256] [--caption-tokens 64]
//                      [--rank 16] [--repeats 5] [--threads N] [--dtype fp32|bf16]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
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

using dt::bench::option;

}  // namespace

int main(int argc, char** argv) {
  const int64_t dim = std::stoll(option(argc, argv, "--dim", "512"));
  const int64_t layers = std::stoll(option(argc, argv, "--layers", "4"));
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", "256"));
  const int64_t caption_tokens = std::stoll(option(argc, argv, "--caption-tokens", "64"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "5"));
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
  dt::zimage::ZImageTransformer model(c);
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
  const at::Tensor neg = torch::randn({caption_tokens / 4, c.cap_feat_dim}).to(dtype);  // a short negative prompt
  const at::Tensor pos_other = torch::randn({caption_tokens, c.cap_feat_dim}).to(dtype);  // one as long as the prompt
  const at::Tensor sigma = torch::full({1}, 0.5f);
  torch::NoGradGuard no_grad;

  auto step = [&](const at::Tensor& v) { return dt::euler_step(x.to(at::kFloat), v, 0.5, 0.45); };
  auto time = [](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const auto chosen = dt::lora::select_layers(denoiser.module(), {"attn-mlp", {}, {}}, dt::zimage_family().lora_presets());
  dt::lora::Adapters adapters =
      dt::lora::Adapters::create(denoiser.module(), denoiser.lora_state(), chosen, {rank, static_cast<double>(rank), 0.0, 1});
  // The variants take turns, round after round, and each keeps its best time: on a shared machine
  // every variant then sees the same spread of load.
  double batched = 1e30, separate = 1e30, batched_equal = 1e30, separate_equal = 1e30, plain = 1e30, adapter = 1e30,
         merged = 1e30;
  for (int round = 0; round <= repeats; ++round) {  // round 0 warms up
    auto keep = [&](double& best, double t) { best = round == 0 ? best : std::min(best, t); };
    denoiser.lora_state().enabled = false;
    keep(batched, time([&] {
      const at::Tensor v = denoiser.velocity(torch::cat({x, x}), torch::cat({sigma, sigma}), {pos, neg});
      step(dt::guided_velocity(v.narrow(0, 0, 1), v.narrow(0, 1, 1), 5.0));
    }));
    keep(separate, time([&] {
      const at::Tensor vp = denoiser.velocity(x, sigma, {pos}), vn = denoiser.velocity(x, sigma, {neg});
      step(dt::guided_velocity(vp, vn, 5.0));
    }));
    keep(batched_equal, time([&] {
      const at::Tensor v = denoiser.velocity(torch::cat({x, x}), torch::cat({sigma, sigma}), {pos, pos_other});
      step(dt::guided_velocity(v.narrow(0, 0, 1), v.narrow(0, 1, 1), 5.0));
    }));
    keep(separate_equal, time([&] {
      const at::Tensor vp = denoiser.velocity(x, sigma, {pos}), vn = denoiser.velocity(x, sigma, {pos_other});
      step(dt::guided_velocity(vp, vn, 5.0));
    }));
    keep(plain, time([&] { step(denoiser.velocity(x, sigma, {pos})); }));
    denoiser.lora_state().enabled = true;
    keep(adapter, time([&] { step(denoiser.velocity(x, sigma, {pos})); }));
    adapters.merge();
    keep(merged, time([&] { step(denoiser.velocity(x, sigma, {pos})); }));
    adapters.unmerge();
  }

  std::printf("Z-Image dim %lld, %lld layers + 2+2 refiners, %lld image + %lld caption tokens, %s, %d threads\n",
              static_cast<long long>(dim), static_cast<long long>(layers), static_cast<long long>(image_tokens),
              static_cast<long long>(caption_tokens), dtype_name.c_str(), at::get_num_threads());
  std::printf("| measured in one run | ms per step | first / second |\n| --- | ---: | ---: |\n");
  std::printf("| CFG, negative prompt 1/4 as long: two forwards of batch 1 vs one of batch 2 | %.1f vs %.1f | %.2f× |\n",
              separate * 1e3, batched * 1e3, separate / batched);
  std::printf("| CFG, negative prompt as long: two forwards of batch 1 vs one of batch 2 | %.1f vs %.1f | %.2f× |\n",
              separate_equal * 1e3, batched_equal * 1e3, separate_equal / batched_equal);
  std::printf("| LoRA rank %lld attn-mlp: adapters vs merged into the weights | %.1f vs %.1f | %.2f× |\n",
              static_cast<long long>(rank), adapter * 1e3, merged * 1e3, adapter / merged);
  std::printf("| merged LoRA vs no LoRA (should be 1) | %.1f vs %.1f | %.2f× |\n", merged * 1e3, plain * 1e3, merged / plain);
  std::printf("best of %d interleaved rounds\n", repeats);
  return 0;
}
