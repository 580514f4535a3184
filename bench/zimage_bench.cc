// Z-Image transformer throughput on the CPU, fp32 and bf16: forward, and forward + backward with
// trainable LoRA adapters on the attn-mlp layers (base frozen, as in training). Each time is set
// against this machine's GEMM rate for the same dtype, measured in the same run, so the ratio says
// how close the whole model runs to the bare matrix-multiply rate.
//
//   build/zimage_bench [--dim 1024] [--layers 8] [--image-tokens 1024] [--caption-tokens 128]
//                      [--rank 16] [--repeats 2] [--threads N] [--dtypes fp32,bf16]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "core/runtime.h"
#include "models/zimage/transformer.h"
#include "nn/linear.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double best_time(int repeats, F&& f) {  // best of `repeats` after one warm-up call
  f();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

struct Flops {
  double forward = 0;   // every matrix product of the forward
  double backward = 0;  // input gradients of every product + LoRA weight gradients (base frozen)
};

// 2·M·N·K per product. A block over L tokens: q, k, v, out (4·L·d²), FFN (3·L·d·f), attention
// q·kᵀ and p·v (2·2·L²·d), modulation (B·a·4d); LoRA of rank r on the attn-mlp linears.
Flops count_flops(const dt::ZImageConfig& c, double image, double caption, int64_t rank) {
  const double d = c.dim, f = c.ffn_dim(), a = c.adaln_dim(), r = static_cast<double>(rank);
  Flops total;
  auto linear = [&](double tokens, double in, double out, bool lora) {
    total.forward += 2 * tokens * in * out;
    total.backward += 2 * tokens * in * out;  // dX only: the base weights are frozen
    if (lora) {
      const double adapter = 2 * tokens * r * (in + out);
      total.forward += adapter;
      total.backward += 2 * adapter;  // dX and dW of down and up
    }
  };
  auto block = [&](double tokens, bool modulated, bool lora) {
    for (int i = 0; i < 4; ++i) linear(tokens, d, d, lora);
    linear(tokens, d, f, lora), linear(tokens, d, f, lora), linear(tokens, f, d, lora);
    total.forward += 4 * tokens * tokens * d;
    total.backward += 8 * tokens * tokens * d;  // dQ, dK, dV, dP
    if (modulated) total.forward += 2 * a * 4 * d;
  };
  const double unified = image + caption;
  linear(image, 4 * c.in_channels, d, false);
  linear(caption, c.cap_feat_dim, d, false);
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) block(image, true, false), block(caption, false, false);
  for (int64_t i = 0; i < c.n_layers; ++i) block(unified, true, true);
  linear(unified, d, 4 * c.in_channels, false);
  return total;
}

// GEMM rate of this machine for a dtype: the FFN-shaped product [L, d]·[d, f]ᵀ, FLOP/s.
double gemm_rate(at::ScalarType dtype, int64_t tokens, int64_t dim, int64_t hidden, int repeats) {
  at::Tensor x = torch::randn({tokens, dim}).to(dtype), w = torch::randn({hidden, dim}).to(dtype);
  const double t = best_time(repeats + 2, [&] { torch::nn::functional::linear(x, w); });
  return 2.0 * tokens * dim * hidden / t;
}

std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (!option(argc, argv, "--threads", "").empty()) setenv("DT_THREADS", option(argc, argv, "--threads", "").c_str(), 1);
  dt::init_runtime();
  dt::ZImageConfig c;
  c.dim = std::stoll(option(argc, argv, "--dim", "1024"));
  c.n_heads = c.n_kv_heads = c.dim / 128;  // the released head_dim and RoPE axes
  c.n_layers = std::stoll(option(argc, argv, "--layers", "8"));
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", "1024"));
  const int64_t caption_tokens = std::stoll(option(argc, argv, "--caption-tokens", "128"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "2"));
  const std::string dtypes = option(argc, argv, "--dtypes", "fp32,bf16");
  const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(image_tokens)))) * 2;

  const Flops flops = count_flops(c, static_cast<double>((side / 2) * (side / 2)), static_cast<double>(caption_tokens), rank);
  std::printf("Z-Image transformer: dim %ld, %ld layers + %ld refiner pairs, %ld image + %ld caption tokens, "
              "LoRA rank %ld on attn-mlp; %d threads; best of %d\n",
              c.dim, c.n_layers, c.n_refiner_layers, (side / 2) * (side / 2), caption_tokens, rank, at::get_num_threads(), repeats);
  std::printf("counted: forward %.1f GFLOP, backward %.1f GFLOP\n\n", flops.forward / 1e9, flops.backward / 1e9);
  std::printf("%-6s %-18s %10s %10s %12s %10s\n", "dtype", "pass", "time s", "GFLOP/s", "GEMM GFLOP/s", "fraction");

  for (const std::string name : {"fp32", "bf16"}) {
    if (dtypes.find(name) == std::string::npos) continue;
    const at::ScalarType dtype = name == "fp32" ? at::kFloat : at::kBFloat16;
    torch::manual_seed(0);
    dt::zimage::ZImageTransformer model(c);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0, 0.02);
    }
    model->to(dtype);
    for (auto& p : model->parameters()) p.requires_grad_(false);
    auto state = std::make_shared<dt::nn::LoraState>();
    std::vector<at::Tensor> lora;
    const std::regex attn_mlp(R"(^layers\.\d+\.(attention|feed_forward)\.)");
    for (auto& item : model->named_modules()) {
      auto* linear = dynamic_cast<dt::nn::LinearImpl*>(item.value().get());
      if (!linear || !std::regex_search(item.key(), attn_mlp)) continue;
      linear->lora = std::make_shared<dt::nn::LoraAdapter>();
      linear->lora->down = (torch::randn({rank, linear->in_features()}) * 0.01).requires_grad_(true);
      linear->lora->up = (torch::randn({linear->out_features(), rank}) * 0.01).requires_grad_(true);
      linear->lora->state = state;
      lora.push_back(linear->lora->down);
      lora.push_back(linear->lora->up);
    }
    std::vector<at::Tensor> x = {torch::randn({c.in_channels, 1, side, side})};
    std::vector<at::Tensor> caps = {torch::randn({caption_tokens, c.cap_feat_dim})};
    at::Tensor t = torch::tensor({0.5f});

    const double gemm = gemm_rate(dtype, image_tokens + caption_tokens, c.dim, c.ffn_dim(), repeats);
    const double forward = best_time(repeats, [&] {
      torch::NoGradGuard no_grad;
      model->forward(x, t, caps);
    });
    const double train = best_time(repeats, [&] {
      for (auto& p : lora) p.mutable_grad() = at::Tensor();
      model->forward(x, t, caps)[0].to(at::kFloat).pow(2).mean().backward();
    });
    const double fwd_rate = flops.forward / forward, train_rate = (flops.forward + flops.backward) / train;
    std::printf("%-6s %-18s %10.3f %10.1f %12.1f %10.2f\n", name.c_str(), "forward", forward, fwd_rate / 1e9, gemm / 1e9, fwd_rate / gemm);
    std::printf("%-6s %-18s %10.3f %10.1f %12.1f %10.2f\n", name.c_str(), "forward+backward", train, train_rate / 1e9, gemm / 1e9,
                train_rate / gemm);
  }
  return 0;
}
