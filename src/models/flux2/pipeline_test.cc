// The FLUX.2 family on tiny klein pipeline folders: text features (Qwen3 hidden states 9/18/27 of
// all 512 positions through the klein chat template), the VAE's latent space, and a training run
// through the trainer, unchanged.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "lora/file.h"
#include "models/flux2/conditioning.h"
#include "models/flux2/family.h"
#include "models/flux2/tiny.h"
#include "run/train_run.h"
#include "run/transfer_run.h"
#include "testing/families.h"
#include "testing/images.h"
#include "testing/support.h"
#include "text/prompt.h"
#include "text/qwen3.h"
#include "text/tokenizer.h"
#include "transfer/delta_store.h"
#include "vae/load.h"

namespace dt::flux2 {
namespace {

namespace fs = std::filesystem;

struct TinyPipelines {
  testing::ScratchDir dir{"flux2_pipeline"};
  TinyPipelines() {
    write_tiny_pipeline(dir / "base", 1, false);
    write_tiny_pipeline(dir / "distilled", 1, true);
  }
};

TinyPipelines& pipelines() {
  static TinyPipelines p;
  return p;
}

// A changed transformer config (make-tiny --transformer-config) is applied; a misspelt entry is
// refused rather than left out.
TEST(Flux2Pipeline, TinyTransformerConfigChangesAreChecked) {
  testing::ScratchDir dir{"flux2_tiny_config"};
  write_tiny_pipeline(dir / "wide", 1, false, R"({"num_single_layers": 3})");
  EXPECT_EQ(read_json_file(dir / "wide/transformer/config.json")["num_single_layers"], 3);
  const std::string why = testing::error_of([&] { write_tiny_pipeline(dir / "typo", 1, false, R"({"num_single_layer": 3})"); });
  EXPECT_EQ(why.rfind("transformer config changes: 'num_single_layer' is not an entry of the config (", 0), 0u) << why;
}

TEST(Flux2Pipeline, TextFeaturesAreLayers9_18_27OfAll512Positions) {
  const std::string base = pipelines().dir / "base";
  auto text = flux2_family().load_text_encoder(base, LoadOptions{});
  const std::vector<std::string> prompts = {"a red fox in the snow", ""};
  auto features = text->encode(prompts);
  ASSERT_EQ(features.size(), 2u);
  EXPECT_EQ(features[0].sizes(), (c10::IntArrayRef{512, 96}));
  EXPECT_EQ(features[1].sizes(), (c10::IntArrayRef{512, 96}));

  // The same through the parts: template without thinking, right padding, three hidden states.
  Tokenizer tokenizer = Tokenizer::load(base + "/tokenizer");
  EncodedPrompts ids = encode_prompts(tokenizer, prompts, ChatTemplate::qwen3_no_thinking, 512);
  EXPECT_NE(apply_chat_template(ChatTemplate::qwen3_no_thinking, "x").find("<think>\n\n</think>\n\n"), std::string::npos);
  auto encoder = Qwen3Encoder::load(base + "/text_encoder", LoadOptions{});
  torch::NoGradGuard no_grad;
  auto states = encoder->hidden_states(ids.input_ids, ids.attention_mask, {9, 18, 27});
  at::Tensor expected = torch::cat(states, -1);
  EXPECT_TRUE(torch::equal(features[0], expected[0]));
  EXPECT_TRUE(torch::equal(features[1], expected[1]));
  // Pad positions carry information (FLUX.2 feeds them to the transformer) and depend on the prompt.
  EXPECT_GT((features[0][400] - features[1][400]).abs().max().item<double>(), 1e-3);
  EXPECT_EQ(text->identity(), flux2_family().load_text_encoder(pipelines().dir / "distilled", LoadOptions{})->identity());
}

TEST(Flux2Pipeline, LatentsArePatchifiedBatchNormNormalizedMeans) {
  const std::string base = pipelines().dir / "base";
  auto vae = flux2_family().load_vae(base, LoadOptions{});
  torch::manual_seed(3);
  at::Tensor images = torch::rand({2, 3, 64, 48}) * 2 - 1;
  at::Tensor x0 = vae->encode(images);
  EXPECT_EQ(x0.sizes(), (c10::IntArrayRef{2, 128, 4, 3}));
  EXPECT_EQ(flux2_family().latent_shape(64, 48), (std::vector<int64_t>{128, 4, 3}));
  vae::AutoencoderKL raw = vae::load_autoencoder(base + "/vae");
  torch::NoGradGuard no_grad;
  at::Tensor mean = raw->encode(images).mean;
  at::Tensor by_hand = (flux2::patchify_2x2(mean) - raw->bn_mean().view({1, -1, 1, 1})) / raw->bn_std().view({1, -1, 1, 1});
  EXPECT_LE((x0 - by_hand).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(vae->decode(x0).sizes(), images.sizes());
  // The Z-Image family refuses this VAE; this family refuses the FLUX.1 one.
  EXPECT_THROW(family_by_name("zimage").load_vae(base, LoadOptions{}), Error);
  EXPECT_EQ(vae->identity().rfind("flux2:", 0), 0u);
}

TEST(Flux2Pipeline, DetectionAndSchedulerOfThePipelineFolders) {
  EXPECT_EQ(&detect_family(pipelines().dir / "base"), &flux2_family());
  EXPECT_EQ(&detect_family(pipelines().dir / "distilled"), &flux2_family());
  // The distilled sibling shares text encoder and VAE, not the transformer.
  auto a = flux2_family().load_transformer(pipelines().dir / "base", LoadOptions{});
  auto b = flux2_family().load_transformer(pipelines().dir / "distilled", LoadOptions{});
  EXPECT_NE(a->identity(), b->identity());
  EXPECT_EQ(Checkpoint::open(pipelines().dir / "base").components().size(), 3u);  // transformer, text_encoder, vae
}

// The whole method on FLUX.2 through the trainer and transfer as they are: a LoRA trained on the
// Base (images → caches → plan → loop → LoRA file in a tool layout with fused qkv), then recorded
// on the Base (exact form) and learned by the distilled sibling at the family's g.
TEST(Flux2Pipeline, TrainsOnBaseThenTransfersToDistilled) {
  testing::ScratchDir dir("flux2_train");
  for (int i = 0; i < 3; ++i) {
    testing::write(dir / ("images/" + std::to_string(i) + ".txt"), "a tiny test image number " + std::to_string(i));
    testing::write(dir / ("images/" + std::to_string(i) + ".jpg"), testing::encode_jpeg(testing::quadrants(48 + 16 * i, 64)));
  }
  RunConfig run;
  run.base_dir = dir.str();
  run.model.base = pipelines().dir / "base";
  run.model.dtype = "fp32";
  run.data.resolutions = {64};
  run.data.concepts.push_back({});
  run.data.concepts.back().path = "images";
  run.lora.preset = "blocks";
  run.lora.rank = 4;
  run.lora.alpha = 4;
  run.train.epochs = 2;
  run.train.learning_rate = 1e-3;
  run.output.run_dir = "run";
  run.output.lora = "flux2.safetensors";  // relative to the config folder
  run.output.format = "kohya";
  run.output.tensorboard = false;
  LoopResult result = train(run, false);
  EXPECT_EQ(result.batches, 6);
  EXPECT_TRUE(std::isfinite(result.last_loss));
  lora::LoraWeights teacher = lora::read_lora(dir / "flux2.safetensors", dt::testing::all_key_maps());
  EXPECT_EQ(teacher.family, "flux2-klein");
  EXPECT_EQ(teacher.modules.size(), 12u + 2u);  // every Linear of the double and the single block
  EXPECT_TRUE(Checkpoint::open(dir / "flux2.safetensors").contains("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"));
  double trained = 0;
  for (const auto& m : teacher.modules) trained += m.up.abs().sum().item<double>();
  EXPECT_GT(trained, 0.0);  // up starts at zero: the steps moved it

  run.transfer.teacher_lora = "flux2.safetensors";
  run.transfer.student = pipelines().dir / "distilled";
  run.transfer.exact = true;
  run.output.run_dir = "transfer";
  run.output.lora = "learned.safetensors";
  run.output.format = "peft";
  LoopResult learned = transfer(run, false);
  EXPECT_EQ(learned.batches, 6);
  EXPECT_TRUE(std::isfinite(learned.last_loss));
  auto store = DeltaStore::open(dir / "transfer/deltas");
  EXPECT_EQ(store->size(), 6u);
  EXPECT_EQ(store->manifest().family, "flux2-klein");
  EXPECT_TRUE(store->manifest().exact);
  lora::LoraWeights student = lora::read_lora(dir / "learned.safetensors", dt::testing::all_key_maps());
  ASSERT_EQ(student.family, "flux2-klein");
  double moved = 0;
  for (const auto& m : student.modules) moved += (lora::delta(m) - lora::delta(*teacher.find(m.name))).abs().max().item<double>();
  EXPECT_GT(moved, 0.0);  // learn changed the teacher's LoRA it started from
}

}  // namespace
}  // namespace dt::flux2
