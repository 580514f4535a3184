// FLUX.2 transformer throughput on the CPU, fp32 and bf16: forward, and forward + backward with
// trainable LoRA adapters on the "blocks" layers (base frozen, as in training). Each time is set
// against this machine's GEMM rate for the same dtype, measured in the same run. The default
// mid-size config matches zimage_bench's width, depth budget and token counts: inner dim 1024 (8
// heads of 128), 2 double + 6 single blocks (each block ≈ 13·d² per token, a Z-Image layer 12·d²),
// 1024 image + 128 text tokens.
//
//   build/flux2_bench [--heads 8] [--double 2] [--single 6] [--image-tokens 1024] [--text-tokens 128]
//                     [--rank 16] [--repeats 2] [--threads N] [--dtypes fp32,bf16]
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/runtime.h"
#include "models/flux2/transformer.h"
#include "nn/linear.h"

namespace {

using dt::bench::best_time;
using dt::bench::gemm_rate;
using dt::bench::option;

struct Flops {
  double forward = 0;   // every matrix product of the forward
  double backward = 0;  // input gradients of every product + LoRA weight gradients (base frozen)
};

// 2·M·N·K per product. Double block: per stream q, k, v, out (d → d) and the SwiGLU MLP (d → 2m,
// m → d) over its tokens, joint attention 2·2·S²·d; single block: qkv + MLP in (d → 3d + 2m) and out
// (d + m → d) over all S tokens, attention 2·2·S²·d. LoRA of rank r on every block Linear.
Flops count_flops(const dt::Flux2Config& c, double image, double text, int64_t rank) {
  const double d = static_cast<double>(c.inner_dim()), m = static_cast<double>(c.mlp_hidden()), r = static_cast<double>(rank);
  const double s = image + text;
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
  auto attention = [&] {
    total.forward += 4 * s * s * d;
    total.backward += 8 * s * s * d;  // dQ, dK, dV, dP
  };
  linear(image, static_cast<double>(c.in_channels), d, false);
  linear(text, static_cast<double>(c.joint_attention_dim), d, false);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    for (double tokens : {image, text}) {
      for (int k = 0; k < 4; ++k) linear(tokens, d, d, true);
      linear(tokens, d, 2 * m, true), linear(tokens, m, d, true);
    }
    attention();
  }
  for (int64_t i = 0; i < c.num_single_layers; ++i) {
    linear(s, d, 3 * d + 2 * m, true), linear(s, d + m, d, true);
    attention();
  }
  linear(image, d, static_cast<double>(c.out_channels), false);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  if (!option(argc, argv, "--threads", "").empty()) setenv("DT_THREADS", option(argc, argv, "--threads", "").c_str(), 1);
  dt::init_runtime();
  dt::Flux2Config c;  // klein's layout (head_dim 128, RoPE 4 × 32, mlp_ratio 3), mid-size
  c.num_attention_heads = std::stoll(option(argc, argv, "--heads", "8"));
  c.num_layers = std::stoll(option(argc, argv, "--double", "2"));
  c.num_single_layers = std::stoll(option(argc, argv, "--single", "6"));
  c.joint_attention_dim = 3 * 1024;  // three stacked hidden states of a small text encoder
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", "1024"));
  const int64_t text_tokens = std::stoll(option(argc, argv, "--text-tokens", "128"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "2"));
  const std::string dtypes = option(argc, argv, "--dtypes", "fp32,bf16");
  const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(image_tokens))));
  const int64_t tokens = side * side;

  const Flops flops = count_flops(c, static_cast<double>(tokens), static_cast<double>(text_tokens), rank);
  std::printf("FLUX.2 transformer: inner dim %ld, %ld double + %ld single blocks, %ld image + %ld text tokens, "
              "LoRA rank %ld on blocks; %d threads; best of %d\n",
              c.inner_dim(), c.num_layers, c.num_single_layers, tokens, text_tokens, rank, at::get_num_threads(), repeats);
  std::printf("counted: forward %.1f GFLOP, backward %.1f GFLOP\n\n", flops.forward / 1e9, flops.backward / 1e9);
  std::printf("%-6s %-18s %10s %10s %12s %10s\n", "dtype", "pass", "time s", "GFLOP/s", "GEMM GFLOP/s", "fraction");

  for (const std::string name : {"fp32", "bf16"}) {
    if (dtypes.find(name) == std::string::npos) continue;
    const at::ScalarType dtype = name == "fp32" ? at::kFloat : at::kBFloat16;
    torch::manual_seed(0);
    dt::flux2::Flux2Transformer model(c);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0, 0.02);
    }
    model->to(dtype);
    for (auto& p : model->parameters()) p.requires_grad_(false);
    auto state = std::make_shared<dt::nn::LoraState>();
    std::vector<at::Tensor> lora;
    for (auto& item : model->named_modules()) {
      auto* linear = dynamic_cast<dt::nn::LinearImpl*>(item.value().get());
      if (!linear || item.key().find("transformer_block") == std::string::npos) continue;
      linear->lora = std::make_shared<dt::nn::LoraAdapter>();
      linear->lora->down = (torch::randn({rank, linear->in_features()}) * 0.01).requires_grad_(true);
      linear->lora->up = (torch::randn({linear->out_features(), rank}) * 0.01).requires_grad_(true);
      linear->lora->state = state;
      lora.push_back(linear->lora->down);
      lora.push_back(linear->lora->up);
    }
    at::Tensor x = torch::randn({1, tokens, c.in_channels}), text = torch::randn({1, text_tokens, c.joint_attention_dim});
    at::Tensor t = torch::tensor({0.5f}), img_ids = dt::flux2::image_ids(side, side), txt_ids = dt::flux2::text_ids(text_tokens);

    const double gemm = gemm_rate(dtype, tokens + text_tokens, c.inner_dim(), c.mlp_hidden(), repeats);
    const double forward = best_time(repeats, [&] {
      torch::NoGradGuard no_grad;
      model->forward(x, text, t, img_ids, txt_ids);
    });
    const double train = best_time(repeats, [&] {
      for (auto& p : lora) p.mutable_grad() = at::Tensor();
      model->forward(x, text, t, img_ids, txt_ids).to(at::kFloat).pow(2).mean().backward();
    });
    const double fwd_rate = flops.forward / forward, train_rate = (flops.forward + flops.backward) / train;
    std::printf("%-6s %-18s %10.3f %10.1f %12.1f %10.2f\n", name.c_str(), "forward", forward, fwd_rate / 1e9, gemm / 1e9, fwd_rate / gemm);
    std::printf("%-6s %-18s %10.3f %10.1f %12.1f %10.2f\n", name.c_str(), "forward+backward", train, train_rate / 1e9, gemm / 1e9,
                train_rate / gemm);
  }
  return 0;
}
