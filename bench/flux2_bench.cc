// FLUX.2 transformer throughput, fp32 and bf16: forward, and forward + backward with trainable
// LoRA adapters on the "blocks" layers (base frozen, as in training). Each time is set against the
// device's GEMM rate for the same dtype, measured in the same run (on CUDA with the peak device
// memory of each pass; see zimage_bench for the columns). The default
// mid-size config matches zimage_bench's width, depth budget and token counts: inner dim 1024 (8
// heads of 128), 2 double + 6 single blocks (each block ≈ 13·d² per token, a Z-Image layer 12·d²),
// 1024 image + 128 text tokens.
//
//   build/flux2_bench [--heads 8] [--double 2] [--single 6] [--image-tokens 1024] [--text-tokens 128]
//                     [--rank 16] [--repeats 2] [--threads N] [--dtypes fp32,bf16]
//                     [--device cpu|cuda] [--checkpointing off,on] [--attention fused,explicit] [--offload N]
//   --klein 4b | 9b: the released klein transformer (specs/flux2.md §2) at 1024² (4096 image tokens,
//   512 text tokens).
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

namespace {

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
  const std::string klein = option(argc, argv, "--klein", "");
  if (!klein.empty() && klein != "4b" && klein != "9b") {
    std::fprintf(stderr, "--klein must be 4b or 9b\n");
    return 2;
  }
  dt::Flux2Config c;  // klein 4B
  if (klein == "9b") c.num_layers = 8, c.num_single_layers = 24, c.num_attention_heads = 32, c.joint_attention_dim = 12288;
  if (klein.empty()) {
    c.num_attention_heads = std::stoll(option(argc, argv, "--heads", "8"));
    c.num_layers = std::stoll(option(argc, argv, "--double", "2"));
    c.num_single_layers = std::stoll(option(argc, argv, "--single", "6"));
    c.joint_attention_dim = 3 * 1024;  // three stacked hidden states of a small text encoder
  }
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", klein.empty() ? "1024" : "4096"));
  const int64_t text_tokens = std::stoll(option(argc, argv, "--text-tokens", klein.empty() ? "128" : "512"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "2"));
  const int64_t offload = std::stoll(option(argc, argv, "--offload", "0"));
  const c10::Device device = dt::bench::bench_device(argc, argv);
  const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(image_tokens))));
  const int64_t tokens = side * side;

  const Flops flops = count_flops(c, static_cast<double>(tokens), static_cast<double>(text_tokens), rank);
  std::printf("FLUX.2 transformer: inner dim %ld, %ld double + %ld single blocks, %ld image + %ld text tokens, "
              "LoRA rank %ld on blocks; %s, %d threads; best of %d%s\n",
              c.inner_dim(), c.num_layers, c.num_single_layers, tokens, text_tokens, rank, device.str().c_str(),
              at::get_num_threads(), repeats, offload ? (", " + std::to_string(offload) + " blocks offloaded").c_str() : "");
  std::printf("counted: forward %.1f GFLOP, backward %.1f GFLOP\n\n", flops.forward / 1e9, flops.backward / 1e9);
  dt::bench::print_header();

  for (const std::string& name : dt::bench::choices(argc, argv, "--dtypes", "fp32,bf16")) {
    const at::ScalarType dtype = name == "fp32" ? at::kFloat : at::kBFloat16;
    dt::flux2::Flux2Transformer model(c);
    std::vector<at::Tensor> lora = dt::bench::random_model_with_lora(
        *model, offload ? c10::Device(c10::kCPU) : device, dtype, std::regex("transformer_block"), rank);
    if (offload) model->offload_blocks(offload, device);
    at::Tensor x = torch::randn({1, tokens, c.in_channels}), text = torch::randn({1, text_tokens, c.joint_attention_dim});
    at::Tensor t = torch::tensor({0.5f}), img_ids = dt::flux2::image_ids(side, side), txt_ids = dt::flux2::text_ids(text_tokens);
    const double gemm = dt::bench::gemm_rate(dtype, tokens + text_tokens, c.inner_dim(), c.mlp_hidden(), repeats, device);
    dt::bench::measure_choices(
        argc, argv, name, offload > 0, flops.forward, flops.backward, gemm, repeats, device,
        [&](bool on) { model->set_gradient_checkpointing(on); }, [&] { model->forward(x, text, t, img_ids, txt_ids); },
        [&] {
          for (auto& p : lora) p.mutable_grad() = at::Tensor();
          model->forward(x, text, t, img_ids, txt_ids).to(at::kFloat).pow(2).mean().backward();
        });
  }
  return 0;
}
