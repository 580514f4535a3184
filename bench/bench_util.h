// Helpers shared by the model benchmarks: best-of-N timing, this machine's GEMM rate for a dtype
// (the yardstick every model time is set against, measured in the same run), `--name value`
// options, and the transformer benchmarks' common run: random frozen weights made on the device,
// LoRA adapters, the forward and forward + backward passes timed with their peak device memory.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/split_matmul.h"
#include "nn/linear.h"

#ifdef DT_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace dt::bench {

inline std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

// The benchmark's device (--device cpu | cuda | cuda:N) with its index resolved.
inline c10::Device bench_device(int argc, char** argv) {
  c10::Device d(option(argc, argv, "--device", "cpu"));
#ifdef DT_CUDA
  if (d.is_cuda() && !d.has_index()) d = c10::Device(c10::kCUDA, c10::cuda::current_device());
#endif
  return d;
}

// Waits for the device's queued work, so that a clock read afterwards includes it.
inline void sync(c10::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

inline void reset_peak_memory(c10::Device d) {
#ifdef DT_CUDA
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#endif
}

// Peak bytes allocated on a CUDA device since the last reset, in GiB; NaN elsewhere.
inline double peak_memory_gib(c10::Device d) {
#ifdef DT_CUDA
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 30);  // [0]: the aggregate pool
  }
#endif
  return NAN;
}

template <typename F>
double best_time(int repeats, F&& f, c10::Device d = c10::kCPU) {  // best of `repeats` after one warm-up call
  f();
  sync(d);
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    sync(d);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// GEMM rate of this machine for a dtype: the FFN-shaped product [L, d]·[d, f]ᵀ as a layer makes it
// (float32 split across the cores, nn/split_matmul.h), FLOP/s.
inline double gemm_rate(at::ScalarType dtype, int64_t tokens, int64_t dim, int64_t hidden, int repeats,
                        c10::Device d = c10::kCPU) {
  at::Tensor x = torch::randn({tokens, dim}).to(d, dtype), w = torch::randn({hidden, dim}).to(d, dtype);
  const double t = best_time(repeats + 2, [&] { nn::split_linear(x, w, {}); }, d);  // as the models' layers run it
  return 2.0 * tokens * dim * hidden / t;
}

// Frozen random weights N(0, 0.02²) of `dtype`, made directly on `d` (a full-size model never
// exists on the host); returns the rank-`rank` LoRA tensors attached to the Linear layers whose
// names match `layers`.
inline std::vector<at::Tensor> random_model_with_lora(torch::nn::Module& model, c10::Device d, at::ScalarType dtype,
                                                      const std::regex& layers, int64_t rank) {
  torch::manual_seed(0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.parameters()) {
      p.set_data(torch::empty(p.sizes(), torch::TensorOptions().device(d).dtype(dtype)));
      p.normal_(0, 0.02);
      p.requires_grad_(false);
    }
  }
  auto state = std::make_shared<nn::LoraState>();
  std::vector<at::Tensor> lora;
  for (auto& item : model.named_modules()) {
    auto* linear = dynamic_cast<nn::LinearImpl*>(item.value().get());
    if (!linear || !std::regex_search(item.key(), layers)) continue;
    linear->lora = std::make_shared<nn::LoraAdapter>();
    linear->lora->down = (torch::randn({rank, linear->in_features()}) * 0.01).to(d).requires_grad_(true);
    linear->lora->up = (torch::randn({linear->out_features(), rank}) * 0.01).to(d).requires_grad_(true);
    linear->lora->state = state;
    lora.push_back(linear->lora->down);
    lora.push_back(linear->lora->up);
  }
  return lora;
}

// Bytes of every parameter and buffer of `model` (the weights as stored: 8-bit codes and their scales).
inline double weight_bytes(torch::nn::Module& model) {
  double bytes = 0;
  for (const auto& p : model.parameters()) bytes += static_cast<double>(p.numel() * p.element_size());
  for (const auto& b : model.buffers()) bytes += static_cast<double>(b.numel() * b.element_size());
  return bytes;
}

// Comma-separated choices of an option ("off,on").
inline std::vector<std::string> choices(int argc, char** argv, const std::string& name, const std::string& fallback) {
  std::vector<std::string> out;
  std::string all = option(argc, argv, name, fallback);
  for (size_t at = 0; at <= all.size();) {
    const size_t comma = std::min(all.find(',', at), all.size());
    if (comma > at) out.push_back(all.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

inline void print_header() {
  std::printf("%-10s %-9s %-14s %-18s %10s %10s %12s %10s %10s\n", "dtype", "attention", "checkpointing", "pass", "time s",
              "GFLOP/s", "GEMM GFLOP/s", "fraction", "peak GiB");
}

// Times `forward` (without gradients) and `train` (forward + backward) and prints a row for each:
// the rate from the counted FLOPs against the GEMM rate, and the peak device memory of the pass.
inline void measure_passes(const std::string& dtype, const std::string& attention, const std::string& checkpointing,
                           double forward_flops, double backward_flops, double gemm, int repeats, c10::Device d,
                           const std::function<void()>& forward, const std::function<void()>& train) {
  auto row = [&](const char* pass, double flops, const std::function<void()>& f) {
    reset_peak_memory(d);
    const double time = best_time(repeats, f, d);
    const double rate = flops / time;
    std::printf("%-10s %-9s %-14s %-18s %10.3f %10.1f %12.1f %10.2f %10.2f\n", dtype.c_str(), attention.c_str(),
                checkpointing.c_str(), pass, time, rate / 1e9, gemm / 1e9, rate / gemm, peak_memory_gib(d));
    std::fflush(stdout);
  };
  row("forward", forward_flops, [&] {
    torch::NoGradGuard no_grad;
    forward();
  });
  row("forward+backward", forward_flops + backward_flops, train);
}

// measure_passes for every --attention (fused, explicit) × --checkpointing (off, on) choice; an
// offloaded model trains with checkpointing only, so "off" is skipped for it.
inline void measure_choices(int argc, char** argv, const std::string& dtype, bool offloaded, double forward_flops,
                            double backward_flops, double gemm, int repeats, c10::Device d,
                            const std::function<void(bool)>& set_checkpointing, const std::function<void()>& forward,
                            const std::function<void()>& train) {
  for (const std::string& attention : choices(argc, argv, "--attention", "fused"))
    for (const std::string& checkpointing : choices(argc, argv, "--checkpointing", "off")) {
      if (offloaded && checkpointing == "off") continue;
      nn::set_explicit_attention(attention == "explicit");
      set_checkpointing(checkpointing == "on");
      measure_passes(dtype, attention, checkpointing, forward_flops, backward_flops, gemm, repeats, d, forward, train);
    }
  nn::set_explicit_attention(false);
}

}  // namespace dt::bench
