#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/fp8.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class CheckpointLayouts : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("dt_ck_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string at(const std::string& relative) {
    fs::create_directories((root_ / relative).parent_path());
    return (root_ / relative).string();
  }
  void json(const std::string& relative, const std::string& text) { write_file_atomic(at(relative), text); }
  // A model folder split into two shards with an index, as save_pretrained writes it.
  void sharded(const std::string& folder, const std::string& stem) {
    write_safetensors(at(folder + "/" + stem + "-00001-of-00002.safetensors"), {{"a.weight", torch::ones({2, 3})}});
    write_safetensors(at(folder + "/" + stem + "-00002-of-00002.safetensors"), {{"b.weight", torch::full({4}, 2.0)}});
    json(folder + "/" + stem + ".safetensors.index.json",
         R"({"metadata": {"total_size": 40}, "weight_map": {"a.weight": ")" + stem + R"(-00001-of-00002.safetensors",
             "b.weight": ")" + stem + R"(-00002-of-00002.safetensors"}})");
  }
  std::string error_opening(const std::string& relative) {
    try {
      Checkpoint::open(at(relative));
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "opened " << relative;
    return "";
  }

  fs::path root_;
};

bool inside(const Checkpoint& ck, const at::Tensor& t) {
  auto p = static_cast<const uint8_t*>(t.data_ptr());
  for (const auto& f : ck.files())
    if (p >= f->bytes() && p < f->bytes() + f->size()) return true;
  return false;
}

// ComfyUI's scaled fp8 single file: every finite E4M3 code in two weights, one with a scalar scale
// and one with a scale per output row, beside a bf16 weight without one, an input scale and the
// marker. Each weight reads as its code's value times its scale, in float32, bit for bit.
TEST_F(CheckpointLayouts, ScaledFp8WeightsReadAsCodeValuesTimesTheirScales) {
  const at::Tensor values = testing::e4m3_values();
  const at::Tensor finite = values.isnan().logical_not().nonzero().flatten();  // 254 codes
  const at::Tensor codes = finite.to(at::kByte).view({2, 127});
  const at::Tensor plain = torch::randn({2, 3}).to(at::kBFloat16);
  const at::Tensor row_scales = torch::tensor({2.0f, 0.25f});
  const std::string file = at("scaled.safetensors");
  testing::write_raw_safetensors(file, {{"a.weight", "F8_E4M3", codes},
                                        {"a.scale_weight", "F32", torch::tensor(0.5f)},
                                        {"a.scale_input", "F32", torch::tensor(1.0f)},
                                        {"b.weight", "F8_E4M3", codes},
                                        {"b.scale_weight", "F32", row_scales},
                                        {"c.weight", "BF16", plain},
                                        {"scaled_fp8", "F8_E4M3", torch::empty({0}, at::kByte)}});
  const Checkpoint ck = Checkpoint::open(file);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a.weight", "b.weight", "c.weight"}));
  const at::Tensor decoded = values.index_select(0, finite).view({2, 127});
  const at::Tensor a = ck.get("a.weight"), b = ck.get("b.weight");
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_TRUE(torch::equal(a, decoded * 0.5f));
  EXPECT_TRUE(torch::equal(b, decoded * row_scales.view({2, 1})));
  EXPECT_EQ(b[0][126].item<float>(), 2 * 448.0f);  // the largest code, 0x7E
  EXPECT_TRUE(torch::equal(ck.get("c.weight"), plain));
  EXPECT_EQ(ck.fp8_scales().size(), 2u);

  const std::string lone = at("lone.safetensors");
  testing::write_raw_safetensors(lone, {{"a.scale_weight", "F32", torch::tensor(0.5f)}});
  EXPECT_EQ(error_opening("lone.safetensors"), lone + ": scale 'a.scale_weight' has no weight 'a.weight'");
  const std::string wide = at("wide.safetensors");
  testing::write_raw_safetensors(wide, {{"a.weight", "F8_E4M3", codes}, {"a.scale_weight", "F32", torch::ones({3})}});
  EXPECT_EQ(error_opening("wide.safetensors"), wide + ": scale 'a.scale_weight' holds 3 values; its weight 'a.weight' "
                                                      "needs one, or one per output row");
  const std::string mixed = at("mixed.safetensors");
  testing::write_raw_safetensors(mixed, {{"a.weight", "F8_E4M3", codes}, {"a.comfy_quant", "U8", torch::zeros({4}, at::kByte)}});
  EXPECT_EQ(error_opening("mixed.safetensors"), mixed + ": tensor 'a.comfy_quant' belongs to a per-layer quantisation "
                                                        "format that is not supported (ComfyUI's scaled fp8 files, with "
                                                        "scale_weight tensors, are)");
}

TEST_F(CheckpointLayouts, SingleFile) {
  write_safetensors(at("lora.safetensors"), {{"x", torch::arange(6.0).view({2, 3})}}, {{"ss_network_dim", "4"}});
  Checkpoint ck = Checkpoint::open(at("lora.safetensors"));
  EXPECT_EQ(ck.names(), std::vector<std::string>{"x"});
  EXPECT_TRUE(ck.config().is_object() && ck.config().empty());
  EXPECT_EQ(ck.metadata().at("ss_network_dim"), "4");
  EXPECT_TRUE(torch::equal(ck.get("x"), torch::arange(6.0).view({2, 3})));
}

TEST_F(CheckpointLayouts, DiffusersFolderPrefersTheStandardFileOverVariants) {
  json("transformer/config.json", R"({"_class_name": "ZImageTransformer2DModel", "dim": 64})");
  write_safetensors(at("transformer/diffusion_pytorch_model.safetensors"), {{"w", torch::ones({2})}});
  write_safetensors(at("transformer/diffusion_pytorch_model.fp16.safetensors"), {{"w", torch::ones({2}, at::kHalf)}});
  Checkpoint ck = Checkpoint::open(at("transformer"));
  EXPECT_EQ(ck.config()["dim"], 64);
  EXPECT_EQ(ck.files().size(), 1u);
  EXPECT_EQ(ck.get("w").scalar_type(), at::kFloat);
}

TEST_F(CheckpointLayouts, ShardedDiffusersAndTransformersFoldersAreReadLazily) {
  for (std::string stem : {"diffusion_pytorch_model", "model"}) {
    sharded(stem, stem);
    json(stem + "/config.json", "{}");
    Checkpoint ck = Checkpoint::open(at(stem));
    EXPECT_EQ(ck.names(), (std::vector<std::string>{"a.weight", "b.weight"}));
    EXPECT_EQ(ck.files().size(), 2u);
    EXPECT_TRUE(torch::equal(ck.get("b.weight"), torch::full({4}, 2.0)));
    EXPECT_TRUE(inside(ck, ck.get("a.weight")));  // a view of the mapped shard, not a copy
    EXPECT_EQ(ck.info("a.weight").shape, (std::vector<int64_t>{2, 3}));
  }
}

TEST_F(CheckpointLayouts, TransformersSingleFileFolder) {
  json("text_encoder/config.json", R"({"hidden_size": 32})");
  write_safetensors(at("text_encoder/model.safetensors"), {{"model.norm.weight", torch::ones({32})}});
  Checkpoint ck = Checkpoint::open(at("text_encoder"));
  EXPECT_EQ(ck.config()["hidden_size"], 32);
  EXPECT_TRUE(ck.contains("model.norm.weight"));
}

TEST_F(CheckpointLayouts, PipelineFolderAndItsComponents) {
  json("model_index.json", R"({"_class_name": "ZImagePipeline", "_diffusers_version": "0.40.0",
       "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "Qwen3Model"],
       "tokenizer": ["transformers", "Qwen2Tokenizer"], "transformer": ["diffusers", "ZImageTransformer2DModel"],
       "vae": ["diffusers", "AutoencoderKL"]})");
  json("scheduler/scheduler_config.json", R"({"shift": 3.0})");
  json("tokenizer/tokenizer.json", "{}");
  json("transformer/config.json", R"({"dim": 64})");
  write_safetensors(at("transformer/diffusion_pytorch_model.safetensors"), {{"x_embedder.weight", torch::ones({64, 4})}});
  sharded("text_encoder", "model");
  json("text_encoder/config.json", R"({"hidden_size": 32})");
  json("vae/config.json", R"({"latent_channels": 16})");
  write_safetensors(at("vae/diffusion_pytorch_model.safetensors"), {{"decoder.conv_in.weight", torch::ones({1})}});

  Checkpoint pipeline = Checkpoint::open(root_.string());
  EXPECT_EQ(pipeline.components(), (std::vector<std::string>{"text_encoder", "transformer", "vae"}));
  EXPECT_EQ(pipeline.config()["_class_name"], "ZImagePipeline");
  EXPECT_EQ(pipeline.names(), (std::vector<std::string>{"text_encoder/a.weight", "text_encoder/b.weight",
                                                        "transformer/x_embedder.weight", "vae/decoder.conv_in.weight"}));
  EXPECT_TRUE(torch::equal(pipeline.get("text_encoder/b.weight"), torch::full({4}, 2.0)));
  EXPECT_EQ(pipeline.info("transformer/x_embedder.weight").name, "x_embedder.weight");

  Checkpoint transformer = Checkpoint::open_component(root_.string(), "transformer");
  EXPECT_EQ(transformer.config()["dim"], 64);
  EXPECT_EQ(transformer.names(), std::vector<std::string>{"x_embedder.weight"});

  std::string message;
  try {
    Checkpoint::open_component(root_.string(), "unet");
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_EQ(message, at("model_index.json") + ": lists no component 'unet' (it lists: scheduler, text_encoder, "
                                              "tokenizer, transformer, vae)");
  EXPECT_THROW(Checkpoint::open_component(at("transformer"), "transformer"), Error);
}

TEST_F(CheckpointLayouts, PickleIsRefusedWithTheReason) {
  json("old/config.json", "{}");
  write_file_atomic(at("old/pytorch_model.bin"), "PK\x03\x04");
  EXPECT_NE(error_opening("old").find("old/pytorch_model.bin: pickle checkpoints are not loaded: unpickling can run "
                                      "arbitrary code"),
            std::string::npos);
  for (std::string name : {"model.ckpt", "model.pt", "model.pth"}) {
    write_file_atomic(at(name), "x");
    EXPECT_NE(error_opening(name).find("pickle checkpoints are not loaded"), std::string::npos) << name;
  }
}

TEST_F(CheckpointLayouts, MissingPathAndEmptyFolder) {
  EXPECT_EQ(error_opening("nothing"), at("nothing") + ": no such file or folder");
  fs::create_directories(at("empty"));
  EXPECT_EQ(error_opening("empty"), at("empty") + ": the folder holds no .safetensors file");
}

TEST_F(CheckpointLayouts, SeveralFilesWithoutIndexAreAmbiguous) {
  write_safetensors(at("m/part1.safetensors"), {{"a", torch::ones({1})}});
  write_safetensors(at("m/part2.safetensors"), {{"b", torch::ones({1})}});
  EXPECT_NE(error_opening("m").find("holds 2 .safetensors files and no *.safetensors.index.json"), std::string::npos);
}

TEST_F(CheckpointLayouts, HostileIndexes) {
  const std::string index = "m/model.safetensors.index.json";
  auto expect_error = [&](const std::string& weight_map, const std::string& expected) {
    json(index, R"({"weight_map": )" + weight_map + "}");
    const std::string message = error_opening("m");
    EXPECT_NE(message.find(expected), std::string::npos) << "expected '" << expected << "' in: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  };
  sharded("m", "model");
  expect_error(R"({"a.weight": "model-00003-of-00002.safetensors"})",
               at(index) + ": shard 'model-00003-of-00002.safetensors' is missing");
  expect_error(R"({"a.weight": "../outside.safetensors"})",
               at(index) + ": shard '../outside.safetensors' of tensor 'a.weight' is not a file of this folder");
  expect_error(R"({"a.weight": "/etc/passwd"})", "'/etc/passwd' of tensor 'a.weight' is not a file of this folder");
  expect_error(R"({"a.weight": ".."})", "shard '..' of tensor 'a.weight' is not a file of this folder");
  expect_error(R"({"a.weight": "model-00002-of-00002.safetensors"})",
               at(index) + ": tensor 'a.weight' is placed in 'model-00002-of-00002.safetensors', which does not hold it");
  expect_error(R"({"a.weight": 3})", "the shard of tensor 'a.weight' is not a string");
  expect_error("[]", at(index) + ": the shard index has no 'weight_map' object naming tensors");
  expect_error("{}", "the shard index has no 'weight_map' object naming tensors");
  // The same tensor in two shards.
  write_safetensors(at("m/model-00002-of-00002.safetensors"), {{"b.weight", torch::ones({1})}, {"a.weight", torch::ones({1})}});
  expect_error(R"({"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"})",
               ": tensor 'a.weight' is also in " + at("m/model-00001-of-00002.safetensors"));
  json("m/diffusion_pytorch_model.safetensors.index.json", R"({"weight_map": {}})");
  EXPECT_NE(error_opening("m").find("holds several shard indexes"), std::string::npos);
  json(index, "{not json");
  fs::remove(at("m/diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_EQ(error_opening("m"), at(index) + ": not valid JSON");
}

}  // namespace
}  // namespace dt
