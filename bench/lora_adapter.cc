// Cost of a LoRA adapter on a Linear layer, as ratios measured in one run: forward with the adapter
// (unmerged) and merged vs the plain layer, and forward+backward with a trainable adapter vs the
// plain forward, against the FLOP ratio the adapter adds (2·r·(in + out) / (2·in·out) per token).
// Usage: lora_adapter [dim=1024] [tokens=2048] [threads=0 (LibTorch default)]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "lora/adapters.h"
#include "nn/linear.h"

namespace {

double median_seconds(const std::function<void()>& f, int reps = 7) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Layer : torch::nn::Module {
  explicit Layer(int64_t dim) : linear(dim, dim, false) {
    register_module("linear", linear);
    torch::NoGradGuard no_grad;
    linear->weight.normal_(0, 0.02);
    linear->weight.requires_grad_(false);
  }
  dt::nn::Linear linear;
};

}  // namespace

int main(int argc, char** argv) {
  const int64_t dim = argc > 1 ? std::atoll(argv[1]) : 1024, tokens = argc > 2 ? std::atoll(argv[2]) : 2048;
  if (argc > 3 && std::atoi(argv[3]) > 0) torch::set_num_threads(std::atoi(argv[3]));
  std::printf("dim %lld, tokens %lld, threads %d\n", static_cast<long long>(dim), static_cast<long long>(tokens),
              torch::get_num_threads());
  std::printf("%-5s %5s %12s %14s %14s %14s %12s\n", "dtype", "rank", "plain ms", "adapter/plain", "merged/plain",
              "fwd+bwd/plain", "FLOP ratio");
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (int64_t rank : {16, 64}) {
      Layer layer(dim);
      layer.to(dtype);
      dt::nn::LoraState state;
      auto adapters = dt::lora::Adapters::create(layer, state, {"linear"}, {.rank = rank, .alpha = 1.0, .seed = 0});
      {
        torch::NoGradGuard no_grad;
        adapters.parameters()[1].normal_(0, 0.01);
      }
      at::Tensor x = torch::randn({2, tokens / 2, dim}).to(dtype);
      auto forward = [&] {
        torch::NoGradGuard no_grad;
        layer.linear(x);
      };
      state.enabled = false;
      const double plain = median_seconds(forward);
      state.enabled = true;
      const double adapter = median_seconds(forward);
      const double train = median_seconds([&] {
        layer.linear(x).to(torch::kFloat).sum().backward();
        for (auto& p : adapters.parameters()) p.mutable_grad() = at::Tensor();
      });
      adapters.merge();
      const double merged = median_seconds(forward);
      adapters.unmerge();
      const double flops = 1.0 + static_cast<double>(rank) * (2.0 * dim) / (static_cast<double>(dim) * dim);
      std::printf("%-5s %5lld %12.3f %14.3f %14.3f %14.3f %12.3f\n", dtype == torch::kFloat ? "fp32" : "bf16",
                  static_cast<long long>(rank), plain * 1e3, adapter / plain, merged / plain, train / plain, flops);
    }
  }
  return 0;
}
