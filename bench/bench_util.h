// Helpers shared by the model benchmarks: best-of-N timing, this machine's GEMM rate for a dtype
// (the yardstick every model time is set against, measured in the same run) and `--name value`
// options.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace dt::bench {

template <typename F>
double best_time(int repeats, F&& f) {  // best of `repeats` after one warm-up call
  f();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// GEMM rate of this machine for a dtype: the FFN-shaped product [L, d]·[d, f]ᵀ, FLOP/s.
inline double gemm_rate(at::ScalarType dtype, int64_t tokens, int64_t dim, int64_t hidden, int repeats) {
  at::Tensor x = torch::randn({tokens, dim}).to(dtype), w = torch::randn({hidden, dim}).to(dtype);
  const double t = best_time(repeats + 2, [&] { torch::nn::functional::linear(x, w); });
  return 2.0 * tokens * dim * hidden / t;
}

inline std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

}  // namespace dt::bench
