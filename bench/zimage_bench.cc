// Z-Image transformer throughput, fp32 and bf16: forward, and forward + backward with trainable
// LoRA adapters on the attn-mlp layers (base frozen, as in training). Each time is set against the
// device's GEMM rate for the same dtype, measured in the same run, so the ratio says how close the
// whole model runs to the bare matrix-multiply rate (on a GPU, the model FLOPs utilisation against
// the measured rate; recomputation under checkpointing is not counted as work). On CUDA each row
// also gives the peak device memory of its pass.
//
//   build/zimage_bench [--dim 1024] [--layers 8] [--refiners 2] [--image-tokens 1024]
//                      [--caption-tokens 128] [--rank 16] [--repeats 2] [--threads N]
//                      [--dtypes fp32,bf16] [--device cpu|cuda] [--checkpointing off,on]
//                      [--attention fused,explicit] [--offload N] [--weights dense,int8,fp8]
//                      [--profile TRACE.json]
//   --weights: the blocks' frozen weights in the dtype, or in 8 bits (model.weight_dtype); each
//   row's dtype says which ("bf16+int8"), and a line before the rows gives the weights' bytes.
//   --profile: after the timings, one forward and one forward + backward of the last dtype under
//   LibTorch's profiler, written as a Chrome trace (bench/profile_summary.py sums it per op).
//   --full: the released Z-Image transformer (dim 3840, 30 layers) at 1024² (4096 image tokens).
//   --first-passes N [--first-kind train|forward]: before the timings, the first N forward +
//   backward passes (train: train, learn) or forward passes without gradients (forward: sample,
//   record) of the fresh model, each timed on its own (a run's first steps against its later ones).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/runtime.h"
#include "models/zimage/transformer.h"

#include <torch/csrc/autograd/profiler_legacy.h>

namespace {

using dt::bench::option;

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

}  // namespace

int main(int argc, char** argv) {
  if (!option(argc, argv, "--threads", "").empty()) setenv("DT_THREADS", option(argc, argv, "--threads", "").c_str(), 1);
  dt::init_runtime();
  const bool full = std::find(argv + 1, argv + argc, std::string("--full")) != argv + argc;
  dt::ZImageConfig c;  // the released model's config
  c.dim = std::stoll(option(argc, argv, "--dim", full ? "3840" : "1024"));
  c.n_heads = c.n_kv_heads = c.dim / 128;  // the released head_dim and RoPE axes
  c.n_layers = std::stoll(option(argc, argv, "--layers", full ? "30" : "8"));
  c.n_refiner_layers = std::stoll(option(argc, argv, "--refiners", "2"));
  const int64_t image_tokens = std::stoll(option(argc, argv, "--image-tokens", full ? "4096" : "1024"));
  const int64_t caption_tokens = std::stoll(option(argc, argv, "--caption-tokens", "128"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const int repeats = std::stoi(option(argc, argv, "--repeats", "2"));
  const int64_t offload = std::stoll(option(argc, argv, "--offload", "0"));
  const c10::Device device = dt::bench::bench_device(argc, argv);
  const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(image_tokens)))) * 2;

  const Flops flops = count_flops(c, static_cast<double>((side / 2) * (side / 2)), static_cast<double>(caption_tokens), rank);
  std::printf("Z-Image transformer: dim %ld, %ld layers + %ld refiner pairs, %ld image + %ld caption tokens, "
              "LoRA rank %ld on attn-mlp; %s, %d threads; best of %d%s\n",
              c.dim, c.n_layers, c.n_refiner_layers, (side / 2) * (side / 2), caption_tokens, rank, device.str().c_str(),
              at::get_num_threads(), repeats, offload ? (", " + std::to_string(offload) + " layers offloaded").c_str() : "");
  std::printf("counted: forward %.1f GFLOP, backward %.1f GFLOP\n\n", flops.forward / 1e9, flops.backward / 1e9);
  dt::bench::print_header();

  for (const std::string& dtype_name : dt::bench::choices(argc, argv, "--dtypes", "fp32,bf16"))
  for (const std::string& weights : dt::bench::choices(argc, argv, "--weights", "dense")) {
    const at::ScalarType dtype = dtype_name == "fp32" ? at::kFloat : at::kBFloat16;
    const dt::WeightFormat format = dt::weight_format_by_name(weights == "dense" ? "" : weights, "--weights");
    const std::string name = dtype_name + (weights == "dense" ? "" : "+" + weights);
    dt::zimage::ZImageTransformer model(c);
    // Offloaded layers are made on the host and live there, everything else on the device.
    std::vector<at::Tensor> lora = dt::bench::random_model_with_lora(
        *model, offload ? c10::Device(c10::kCPU) : device, dtype, std::regex(R"(^layers\.\d+\.(attention|feed_forward)\.)"), rank);
    if (format != dt::WeightFormat::dense) model->store_blocks_8bit(format);
    std::printf("%s: weights %.1f MiB\n", name.c_str(), dt::bench::weight_bytes(*model) / (1 << 20));
    if (offload) model->offload_blocks(offload, device);
    std::vector<at::Tensor> x = {torch::randn({c.in_channels, 1, side, side})};
    std::vector<at::Tensor> caps = {torch::randn({caption_tokens, c.cap_feat_dim})};
    at::Tensor t = torch::tensor({0.5f});
    if (const int first = std::stoi(option(argc, argv, "--first-passes", "0")); first > 0) {
      const bool train = option(argc, argv, "--first-kind", "train") == "train";
      std::printf("%s first passes (%s), s:", name.c_str(), train ? "forward + backward" : "forward");
      for (int i = 0; i < first; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        if (train) {
          for (auto& p : lora) p.mutable_grad() = at::Tensor();
          model->forward(x, t, caps)[0].to(at::kFloat).pow(2).mean().backward();
        } else {
          torch::NoGradGuard no_grad;
          model->forward(x, t, caps);
        }
        dt::bench::sync(device);
        std::printf(" %.3f", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        std::fflush(stdout);
      }
      std::printf("\n");
    }
    const double gemm = dt::bench::gemm_rate(dtype, image_tokens + caption_tokens, c.dim, c.ffn_dim(), repeats, device);
    dt::bench::measure_choices(
        argc, argv, name, offload > 0, flops.forward, flops.backward, gemm, repeats, device,
        [&](bool on) { model->set_gradient_checkpointing(on); }, [&] { model->forward(x, t, caps); },
        [&] {
          for (auto& p : lora) p.mutable_grad() = at::Tensor();
          model->forward(x, t, caps)[0].to(at::kFloat).pow(2).mean().backward();
        });
    if (const std::string trace = option(argc, argv, "--profile", ""); !trace.empty()) {
      torch::autograd::profiler::RecordProfile profile(trace);
      {
        torch::NoGradGuard no_grad;
        model->forward(x, t, caps);
      }
      model->forward(x, t, caps)[0].to(at::kFloat).pow(2).mean().backward();
    }
  }
  return 0;
}
