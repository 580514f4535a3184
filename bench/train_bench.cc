// Training steps per second of the mid-size Z-Image configuration (dim 1024, 8 layers, 1024 image +
// 128 caption tokens, rank-16 attn-mlp LoRA, AdamW) on the CPU in fp32 and bf16, with the fraction
// of the machine's GEMM rate (same dtype, measured in the same run) that the step reaches, and the
// peak resident memory.
//
// usage: train_bench [steps per dtype, default 2]      (DT_THREADS sets the thread count)
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/runtime.h"
#include "lora/adapters.h"
#include "models/zimage/family.h"
#include "train/objective.h"
#include "train/optimizer.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kImageSide = 64, kCaption = 128;  // 64×64 latent → 32×32 = 1024 image tokens

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);
}

dt::ZImageConfig mid_size() {
  dt::ZImageConfig c;
  c.dim = 1024;
  c.n_layers = 8;
  c.n_refiner_layers = 2;
  c.n_heads = c.n_kv_heads = 8;  // head_dim 128 = 32 + 48 + 48
  return c;
}

// Weights drawn like the goldens' (activations stay O(1)); only the time matters here.
void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) {
    at::Tensor t = p.value();
    if (t.dim() >= 2) t.normal_(0, 1 / std::sqrt(static_cast<double>(t.size(1))));
    else if (p.key().find("norm") != std::string::npos) t.fill_(1);
    else t.normal_(0, 0.1);
  }
}

// Multiply-adds ×2 of one training step: every Linear once forward and once for its input
// gradient (the base weights are frozen), attention QKᵀ and AV forward and twice backward.
double step_flops(torch::nn::Module& m, const dt::ZImageConfig& c) {
  const double image = kImageSide * kImageSide / 4.0, unified = image + kCaption;
  double linear = 0;
  for (const auto& [name, layer] : dt::lora::linear_layers(m)) {
    double tokens = 1;  // timestep and modulation paths
    if (name.rfind("layers.", 0) == 0 && name.find("adaLN") == std::string::npos) tokens = unified;
    else if (name.rfind("noise_refiner.", 0) == 0 && name.find("adaLN") == std::string::npos) tokens = image;
    else if (name.rfind("context_refiner.", 0) == 0 || name.rfind("cap_embedder", 0) == 0) tokens = kCaption;
    else if (name.find("x_embedder") != std::string::npos || name.find("final_layer.2-1.linear") != std::string::npos) tokens = image;
    linear += 2 * tokens * static_cast<double>(layer->in_features() * layer->out_features());
  }
  auto attention = [&](double tokens, double layers) { return layers * 4 * tokens * tokens * static_cast<double>(c.dim); };
  const double attn = attention(unified, static_cast<double>(c.n_layers)) + attention(image, static_cast<double>(c.n_refiner_layers)) +
                      attention(kCaption, static_cast<double>(c.n_refiner_layers));
  return 2 * linear + 3 * attn;
}

double gemm_rate(c10::ScalarType dtype) {
  const int64_t m = 1152, k = 1024, n = 2730;
  const at::Tensor a = torch::randn({m, k}).to(dtype), b = torch::randn({k, n}).to(dtype);
  at::Tensor c = torch::mm(a, b);  // warm-up
  int reps = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < 2.0 || reps < 3) {
    c = torch::mm(a, b);
    ++reps;
  }
  return 2.0 * m * k * n * reps / seconds_since(start);
}

struct Result {
  double steps_per_s, flops, gemm, rss;
};

Result bench(c10::ScalarType dtype, int steps) {
  const dt::ZImageConfig config = mid_size();
  dt::zimage::ZImageTransformer model(config);
  randomize(*model);
  model->to(dtype);
  for (auto& p : model->parameters()) p.requires_grad_(false);
  dt::zimage::ZImageDenoiser denoiser(model, {});
  const auto layers = dt::lora::select_layers(*model, {"attn-mlp", {}, {}}, dt::zimage_family().lora_presets());
  dt::lora::AdapterOptions lo;
  lo.rank = 16;
  lo.alpha = 16;
  auto adapters = dt::lora::Adapters::create(*model, denoiser.lora_state(), layers, lo);
  dt::AdamW optimizer(adapters.parameters(), {});
  denoiser.module().train();

  dt::Batch batch;
  batch.x0 = torch::randn({1, 16, kImageSide, kImageSide});
  batch.noise = torch::randn({1, 16, kImageSide, kImageSide});
  batch.sigma = torch::tensor({0.6f});
  batch.x_t = dt::noised(batch.x0, batch.noise, batch.sigma).to(dtype);
  batch.loss_weight = torch::ones({1});
  batch.text = {torch::randn({kCaption, config.cap_feat_dim}).to(dtype)};
  dt::FlowObjective flow;
  auto step = [&] {
    flow.step(denoiser, batch).loss.backward();
    optimizer.step(1e-4);
    optimizer.zero_grad();
  };
  step();  // warm-up
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double per_s = steps / seconds_since(start);
  return {per_s, step_flops(*model, config), gemm_rate(dtype), peak_rss_gib()};
}

}  // namespace

int main(int argc, char** argv) {
  dt::init_runtime();
  const int steps = argc > 1 ? std::atoi(argv[1]) : 2;
  std::printf("mid-size Z-Image training step (dim 1024, 8 layers, 1024 image + 128 caption tokens, rank-16 attn-mlp LoRA), "
              "%d threads, %d timed steps per dtype\n", at::get_num_threads(), steps);
  std::printf("%-5s %10s %12s %14s %14s %9s %14s\n", "dtype", "steps/s", "s/step", "step GFLOP/s", "GEMM GFLOP/s",
              "of GEMM", "peak RSS GiB");
  for (auto [name, dtype] : {std::pair{"fp32", torch::kFloat}, std::pair{"bf16", torch::kBFloat16}}) {
    const Result r = bench(dtype, steps);
    std::printf("%-5s %10.4f %12.2f %14.1f %14.1f %8.1f%% %14.2f\n", name, r.steps_per_s, 1 / r.steps_per_s,
                r.flops * r.steps_per_s / 1e9, r.gemm / 1e9, 100 * r.flops * r.steps_per_s / r.gemm, r.rss);
    std::fflush(stdout);
  }
  return 0;
}
