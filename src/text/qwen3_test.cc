#include "text/qwen3.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <torch/torch.h>

#include "cli/forward.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "nn/attention.h"
#include "testing/fp8.h"
#include "testing/support.h"

namespace dt {
namespace {

const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/qwen3";

// max|c − g| ≤ atol + rtol·max|g| over the positions where the golden is defined (not NaN).
void expect_close(const at::Tensor& candidate, const at::Tensor& golden, const std::string& name,
                  double atol = 1e-4, double rtol = 1e-4) {
  ASSERT_EQ(candidate.sizes(), golden.sizes()) << name;
  at::Tensor g = golden.to(at::kDouble), c = candidate.to(at::kDouble);
  at::Tensor defined = g.isnan().logical_not();
  double scale = g.masked_select(defined).abs().max().item<double>();
  double diff = (c - g).masked_select(defined).abs().max().item<double>();
  EXPECT_LE(diff, atol + rtol * scale) << name << " (max |g| " << scale << ")";
}

std::vector<int64_t> all_indices(const Qwen3Encoder& e) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i <= e.config.num_hidden_layers; ++i) v.push_back(i);
  return v;
}

class Qwen3Golden : public ::testing::TestWithParam<bool> {};

TEST_P(Qwen3Golden, ReproducesHiddenStatesAndLogits) {
  nn::set_explicit_attention(GetParam());
  auto encoder = Qwen3Encoder::load(kGolden + "/weights", LoadOptions{});
  auto io = load_safetensors(kGolden + "/io.safetensors");
  torch::NoGradGuard no_grad;
  auto states = encoder->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), all_indices(*encoder));
  ASSERT_EQ(states.size(), 5u);
  for (size_t i = 0; i < states.size(); ++i)
    expect_close(states[i], io.at("out.hidden_states." + std::to_string(i)), "hidden_states." + std::to_string(i));
  ASSERT_TRUE(encoder->has_lm_head());
  expect_close(encoder->logits(states.back()), io.at("out.logits"), "logits");
  nn::set_explicit_attention(false);
}
INSTANTIATE_TEST_SUITE_P(AttentionPath, Qwen3Golden, ::testing::Values(false, true));

TEST(Qwen3, ForwardCommandWritesGoldenNames) {
  const std::string out = dt::testing::temp_dir("qwen3_forward") + "/out.safetensors";
  ForwardArgs args;
  args.model = kGolden + "/weights";
  args.inputs = kGolden + "/io.safetensors";
  args.output = out;
  forward_qwen3(args);
  auto golden = load_safetensors(kGolden + "/io.safetensors");
  auto ours = load_safetensors(out);
  int checked = 0;
  for (const auto& [name, g] : golden)
    if (name.rfind("out.", 0) == 0) {
      ASSERT_TRUE(ours.count(name)) << name;
      expect_close(ours.at(name), g, name);
      ++checked;
    }
  EXPECT_EQ(checked, 6);
}

TEST(Qwen3, SelectedLayersMatchTheFullRunAndPaddingIsIsolated) {
  auto encoder = Qwen3Encoder::load(kGolden + "/weights", LoadOptions{});
  auto io = load_safetensors(kGolden + "/io.safetensors");
  torch::NoGradGuard no_grad;
  at::Tensor ids = io.at("in.input_ids"), mask = io.at("in.attention_mask");
  auto full = encoder->hidden_states(ids, mask, all_indices(*encoder));
  auto some = encoder->hidden_states(ids, mask, {3, 1});  // Z-Image's [-2] is index L-1 = 3
  EXPECT_TRUE(torch::equal(some[0], full[3]));
  EXPECT_TRUE(torch::equal(some[1], full[1]));
  // Row 1 alone (its 11 real tokens) equals its padded batch row on those tokens.
  const int64_t real = mask[1].sum().item<int64_t>();
  ASSERT_LT(real, ids.size(1));
  at::Tensor alone = encoder->hidden_states(ids.slice(0, 1, 2).slice(1, 0, real), mask.slice(0, 1, 2).slice(1, 0, real), {3})[0];
  expect_close(alone[0], full[3][1].slice(0, 0, real), "row 1 alone", 1e-5, 1e-5);
  // Left padding: positions without any real key stay finite and change nothing after them.
  at::Tensor left_ids = torch::cat({ids.slice(0, 1, 2).slice(1, real), ids.slice(0, 1, 2).slice(1, 0, real)}, 1);
  at::Tensor left_mask = torch::cat({mask.slice(0, 1, 2).slice(1, real), mask.slice(0, 1, 2).slice(1, 0, real)}, 1);
  at::Tensor left = encoder->hidden_states(left_ids, left_mask, {4})[0];
  EXPECT_TRUE(left.isfinite().all().item<bool>());
}

TEST(Qwen3, Bfloat16StaysCloseToFloat32) {
  LoadOptions bf16;
  bf16.compute_dtype = at::kBFloat16;
  auto encoder = Qwen3Encoder::load(kGolden + "/weights", bf16);
  auto io = load_safetensors(kGolden + "/io.safetensors");
  torch::NoGradGuard no_grad;
  auto states = encoder->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), {3, 4});
  EXPECT_EQ(states[0].scalar_type(), at::kBFloat16);
  // bf16 keeps 8 bits of mantissa; four layers of rounding stay within a few percent of the scale.
  expect_close(states[0], io.at("out.hidden_states.3"), "bf16 hidden_states.3", 0.0, 0.05);
  expect_close(states[1], io.at("out.hidden_states.4"), "bf16 hidden_states.4", 0.0, 0.05);
}

TEST(Qwen3, RandomCheckpointLoadsAndIsSeeded) {
  Qwen3Config c;
  c.vocab_size = 300, c.hidden_size = 32, c.intermediate_size = 48, c.num_hidden_layers = 2;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 16, c.rope_theta = 1e6;
  const std::string a = dt::testing::temp_dir("qwen3_random_a"), b = dt::testing::temp_dir("qwen3_random_b");
  write_random_qwen3(a, c, 7);
  write_random_qwen3(b, c, 7);
  EXPECT_EQ(read_file(a + "/model.safetensors"), read_file(b + "/model.safetensors"));
  write_random_qwen3(b, c, 8);
  EXPECT_NE(read_file(a + "/model.safetensors"), read_file(b + "/model.safetensors"));
  auto encoder = Qwen3Encoder::load(a, LoadOptions{});
  EXPECT_EQ(encoder->config.num_key_value_heads, 2);
  EXPECT_NE(encoder->lm_head.get(), nullptr);  // untied: its own head
  EXPECT_FALSE(Qwen3Encoder::load(a, LoadOptions{}, /*lm_head=*/false)->has_lm_head());
  EXPECT_TRUE(SafetensorsFile::open(a + "/model.safetensors")->contains("model.layers.1.self_attn.k_norm.weight"));
  torch::NoGradGuard no_grad;
  at::Tensor ids = torch::randint(0, 300, {2, 9}, at::kLong);
  auto states = encoder->hidden_states(ids, torch::ones({2, 9}, at::kLong), {0, 1, 2});
  EXPECT_TRUE(states[2].isfinite().all().item<bool>());
  EXPECT_EQ(encoder->logits(states[2]).sizes(), (std::vector<int64_t>{2, 9, 300}));
}

// ComfyUI's text encoder files: one .safetensors without config.json, with the "model." prefix or
// without. The sizes come from the shapes and give the golden model's hidden states bit for bit;
// a file missing a tensor the sizes come from is refused naming it.
TEST(Qwen3, SingleFileWithoutConfigInfersTheSizes) {
  const auto golden_weights = load_safetensors(kGolden + "/weights/model.safetensors");
  const std::string dir = dt::testing::temp_dir("qwen3_single");
  NamedTensors prefixed(golden_weights.begin(), golden_weights.end()), bare;
  for (const auto& [name, t] : prefixed) bare.emplace_back(name.rfind("model.", 0) == 0 ? name.substr(6) : name, t);
  write_safetensors(dir + "/qwen_3.safetensors", prefixed);
  write_safetensors(dir + "/qwen_3_bare.safetensors", bare);
  auto folder = Qwen3Encoder::load(kGolden + "/weights", LoadOptions{});
  auto io = load_safetensors(kGolden + "/io.safetensors");
  torch::NoGradGuard no_grad;
  const auto want = folder->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), {2, 4});
  for (const char* file : {"/qwen_3.safetensors", "/qwen_3_bare.safetensors"}) {
    auto single = Qwen3Encoder::load(dir + file, LoadOptions{});
    EXPECT_EQ(single->config.to_json(), folder->config.to_json()) << file;
    const auto got = single->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), {2, 4});
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], want[i])) << file << " state " << i;
  }
  NamedTensors missing;
  for (const auto& [name, t] : prefixed)
    if (name != "model.layers.0.self_attn.q_norm.weight") missing.emplace_back(name, t);
  write_safetensors(dir + "/broken.safetensors", missing);
  EXPECT_EQ(testing::error_of([&] { Qwen3Encoder::load(dir + "/broken.safetensors", LoadOptions{}); }),
            dir + "/broken.safetensors: no config.json, and no tensor 'layers.0.self_attn.q_norm.weight' to read the sizes from");
  std::filesystem::remove_all(dir);
}

// ComfyUI's "scaled fp8" text-encoder files: the layers' matrices as E4M3 codes with a per-tensor
// scale_weight (largest magnitude → 448), the embeddings and norms in float. The encoder computes
// what a folder holding the decoded values (code value × scale) computes, bit for bit, and stays
// within fp8's rounding of the original.
TEST(Qwen3, ScaledFp8SingleFileEqualsItsDecodedValues) {
  const auto golden_weights = load_safetensors(kGolden + "/weights/model.safetensors");
  const std::string dir = dt::testing::temp_dir("qwen3_fp8");
  const std::string file = dir + "/qwen_3_fp8_scaled.safetensors";
  auto quantised = [](const std::string& name) { return name.find(".layers.") != std::string::npos; };
  testing::write_scaled_fp8(file, NamedTensors(golden_weights.begin(), golden_weights.end()), "scaled_fp8", quantised);
  NamedTensors decoded;
  const Checkpoint ck = Checkpoint::open(file);
  EXPECT_GT(ck.fp8_scales().size(), 10u);
  for (const auto& name : ck.names()) decoded.emplace_back(name, ck.get(name));
  write_safetensors(dir + "/decoded.safetensors", decoded);
  auto fp8 = Qwen3Encoder::load(file, LoadOptions{}), reference = Qwen3Encoder::load(dir + "/decoded.safetensors", LoadOptions{});
  auto original = Qwen3Encoder::load(kGolden + "/weights", LoadOptions{});
  auto io = load_safetensors(kGolden + "/io.safetensors");
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> layers = {2, 4};
  const auto a = fp8->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), layers);
  const auto b = reference->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), layers);
  const auto o = original->hidden_states(io.at("in.input_ids"), io.at("in.attention_mask"), layers);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
    const at::Tensor valid = io.at("in.attention_mask").to(at::kBool);
    const at::Tensor x = a[i].index({valid}), y = o[i].index({valid});
    const double scale = y.abs().max().item<double>(), diff = (x - y).abs().max().item<double>();
    EXPECT_GT(diff, 1e-5 * scale) << i;  // E4M3's 3 mantissa bits move the states...
    EXPECT_LT(diff, 0.25 * scale) << i;  // ...but they stay the model's
  }
  std::filesystem::remove_all(dir);
}

TEST(Qwen3, BadInputIsAClearError) {
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error (" << needle << ")";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Qwen3Config c;
  c.vocab_size = 64, c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 1;
  c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 8, c.tie_word_embeddings = true;
  const std::string dir = dt::testing::temp_dir("qwen3_bad");
  write_random_qwen3(dir, c, 1);
  auto encoder = Qwen3Encoder::load(dir, LoadOptions{});
  expect_error([&] { encoder->hidden_states(torch::full({1, 3}, 64, at::kLong), torch::ones({1, 3}, at::kLong), {1}); }, "vocabulary");
  expect_error([&] { encoder->hidden_states(torch::zeros({1, 3}, at::kLong), torch::ones({1, 3}, at::kLong), {2}); }, "does not exist");
  auto tensors = load_safetensors(dir + "/model.safetensors");
  tensors.erase("model.layers.0.mlp.up_proj.weight");
  NamedTensors kept(tensors.begin(), tensors.end());
  write_safetensors(dir + "/model.safetensors", kept);
  expect_error([&] { Qwen3Encoder::load(dir, LoadOptions{}); }, "model.layers.0.mlp.up_proj.weight");
  write_file_atomic(dir + "/config.json", R"({"model_type": "qwen3", "hidden_size": 16})");
  expect_error([&] { Qwen3Encoder::load(dir, LoadOptions{}); }, "config.json");
}

}  // namespace
}  // namespace dt
