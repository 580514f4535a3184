// Qwen3 encoder forward on the CPU at pipeline length (512 tokens, batch 1) for a mid-size config
// (hidden 1024, 8 layers, 16/8 heads of 64, MLP 3072): fp32 vs bf16, and the Z-Image selection
// (hidden_states[-2]: the last layer is skipped) vs all hidden states. Times and ratios.
//
// usage: build/qwen3_bench [repeats, default 3]      (DT_THREADS sets the thread count)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/runtime.h"
#include "text/qwen3.h"

namespace {

using Clock = std::chrono::steady_clock;

double best_seconds(int repeats, const std::function<void()>& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  dt::init_runtime();
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 3;
  dt::Qwen3Config c;
  c.vocab_size = 4096, c.hidden_size = 1024, c.intermediate_size = 3072, c.num_hidden_layers = 8;
  c.num_attention_heads = 16, c.num_key_value_heads = 8, c.head_dim = 64, c.rope_theta = 1e6;
  c.tie_word_embeddings = true;
  const auto dir = (std::filesystem::temp_directory_path() / "dt_qwen3_bench").string();
  dt::write_random_qwen3(dir, c, 1);
  torch::NoGradGuard no_grad;
  at::Tensor ids = torch::randint(0, c.vocab_size, {1, 512}, at::kLong);
  at::Tensor mask = torch::ones_like(ids);
  mask.slice(1, 100).fill_(0);  // a 100-token prompt padded to 512, as the pipelines do

  double seconds[2];
  for (int i = 0; i < 2; ++i) {
    dt::LoadOptions o;
    o.compute_dtype = i == 0 ? at::kFloat : at::kBFloat16;
    auto encoder = dt::Qwen3Encoder::load(dir, o);
    seconds[i] = best_seconds(repeats, [&] { encoder->hidden_states(ids, mask, {c.num_hidden_layers - 1}); });
  }
  auto encoder = dt::Qwen3Encoder::load(dir, dt::LoadOptions{});
  std::vector<int64_t> all;
  for (int64_t i = 0; i <= c.num_hidden_layers; ++i) all.push_back(i);
  const double full = best_seconds(repeats, [&] { encoder->hidden_states(ids, mask, all); });
  std::filesystem::remove_all(dir);

  std::printf("threads: %d\n", at::get_num_threads());
  std::printf("fp32, hidden_states[-2]: %.1f ms\n", 1e3 * seconds[0]);
  std::printf("bf16, hidden_states[-2]: %.1f ms   (bf16 / fp32: %.2f)\n", 1e3 * seconds[1], seconds[1] / seconds[0]);
  std::printf("fp32, all hidden states: %.1f ms   ([-2] / all: %.2f, %lld of %lld layers)\n", 1e3 * full,
              seconds[0] / full, static_cast<long long>(c.num_hidden_layers - 1), static_cast<long long>(c.num_hidden_layers));
  return 0;
}
