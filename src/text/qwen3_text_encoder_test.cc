// The pipelines' text encoding on a tiny pipeline folder (tiny tokenizer + golden Qwen3 weights).
#include <gtest/gtest.h>

#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "testing/support.h"
#include "text/prompt.h"
#include "text/qwen3_text_encoder.h"
#include "text/tiny_tokenizer.h"

namespace dt {

namespace {

// A pipeline folder: the tiny tokenizer and the golden Qwen3 weights (vocabulary 512, 4 layers).
std::string tiny_pipeline() {
  const std::string dir = dt::testing::temp_dir("qwen3_text_pipeline");
  write_tiny_tokenizer(dir + "/tokenizer", 512);
  std::filesystem::create_directories(dir + "/text_encoder");
  for (const char* f : {"config.json", "model.safetensors"})
    std::filesystem::copy_file(std::string(DT_SHARED_DIR) + "/golden/qwen3/weights/" + f, dir + "/text_encoder/" + f);
  return dir;
}

TEST(Qwen3TextEncoder, ZImageTakesTheRealTokensOfTheSecondToLastHiddenState) {
  const std::string dir = tiny_pipeline();
  Qwen3TextEncoder text(dir, LoadOptions{}, {ChatTemplate::qwen3, 40, {-2}, true});
  const std::vector<std::string> prompts = {"a cute cat", "a photo of a red car parked in front of an old building"};
  auto features = text.encode(prompts);
  ASSERT_EQ(features.size(), 2u);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Alone and unpadded, the prompt gives the same features (padding is invisible to real tokens).
    auto ids = text.tokenizer().encode(apply_chat_template(ChatTemplate::qwen3, prompts[i]));
    at::Tensor t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    at::Tensor alone = text.encoder().hidden_states(t, torch::ones_like(t), {3})[0][0];
    ASSERT_EQ(features[i].sizes(), alone.sizes());
    EXPECT_TRUE(torch::allclose(features[i], alone, 1e-5, 1e-5));
  }
  EXPECT_EQ(text.identity().rfind("qwen3:", 0), 0u);
  Qwen3TextEncoder other(dir, LoadOptions{}, {ChatTemplate::qwen3_no_thinking, 40, {-2}, true});
  EXPECT_NE(text.identity(), other.identity());
}

TEST(Qwen3TextEncoder, Flux2KleinStacksLayersOverAllPositions) {
  const std::string dir = tiny_pipeline();
  Qwen3TextEncoder text(dir, LoadOptions{}, {ChatTemplate::qwen3_no_thinking, 24, {1, 2, 3}, false});
  auto features = text.encode({"a cat", ""});
  ASSERT_EQ(features.size(), 2u);
  EXPECT_EQ(features[1].sizes(), (std::vector<int64_t>{24, 3 * 64}));
  EncodedPrompts p = encode_prompts(text.tokenizer(), {"a cat", ""}, ChatTemplate::qwen3_no_thinking, 24);
  torch::NoGradGuard no_grad;
  auto states = text.encoder().hidden_states(p.input_ids, p.attention_mask, {1, 2, 3});
  EXPECT_TRUE(torch::equal(features[0].slice(1, 64, 128), states[1][0]));
  EXPECT_TRUE(torch::equal(features[1].slice(1, 128, 192), states[2][1]));
  EXPECT_TRUE(features[0].isfinite().all().item<bool>());  // pad positions are defined too
}

TEST(Qwen3TextEncoder, PadsToTheTokenizersModelMaxLengthWhereShorter) {
  const std::string dir = tiny_pipeline();
  const Qwen3Prompting klein{ChatTemplate::qwen3_no_thinking, 24, {1, 2, 3}, false};
  const std::string config = dir + "/tokenizer/tokenizer_config.json";
  Qwen3TextEncoder full(dir, LoadOptions{}, klein);  // the tiny tokenizer states 131072, as Qwen3's
  ASSERT_EQ(full.encode({"a cat"})[0].size(0), 24);
  nlohmann::json c = read_json_file(config);
  c["model_max_length"] = 16;
  write_file_atomic(config, c.dump());
  Qwen3TextEncoder capped(dir, LoadOptions{}, klein);
  at::Tensor features = capped.encode({"a cat"})[0];
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{16, 3 * 64}));
  Qwen3TextEncoder asked(dir, LoadOptions{}, {ChatTemplate::qwen3_no_thinking, 16, {1, 2, 3}, false});
  EXPECT_TRUE(torch::equal(features, asked.encode({"a cat"})[0]));
  EXPECT_NE(capped.identity(), full.identity());
  c["model_max_length"] = "long";
  write_file_atomic(config, c.dump());
  EXPECT_THROW(Qwen3TextEncoder(dir, LoadOptions{}, klein), Error);
}

TEST(Qwen3TextEncoder, RefusesMismatchedParts) {
  const std::string dir = tiny_pipeline();
  EXPECT_THROW(Qwen3TextEncoder(dir, LoadOptions{}, {ChatTemplate::qwen3, 40, {5}, true}), Error);
  write_tiny_tokenizer(dir + "/tokenizer", 600);  // ids beyond the encoder's 512
  EXPECT_THROW(Qwen3TextEncoder(dir, LoadOptions{}, {ChatTemplate::qwen3, 40, {-2}, true}), Error);
  EXPECT_THROW(Qwen3TextEncoder(dir + "/tokenizer", LoadOptions{}, {ChatTemplate::qwen3, 40, {-2}, true}), Error);
}

}  // namespace
}  // namespace dt
