// The Z-Image transformer against the diffusers golden (shared/golden/zimage_transformer), and the
// properties the rest of deltatrain relies on: batching, checkpointing, loaders, family adapter.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/zimage/family.h"
#include "models/zimage/weights.h"
#include "nn/attention.h"
#include "nn/offload.h"
#include "testing/device.h"
#include "testing/fp8.h"
#include "testing/weights_8bit.h"

namespace dt::zimage {
namespace {

namespace fs = std::filesystem;
const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/zimage_transformer";
const std::string kWeights = kGolden + "/weights";

std::map<std::string, at::Tensor>& golden() {
  static auto io = load_safetensors(kGolden + "/io.safetensors");
  return io;
}

struct Case {
  std::vector<at::Tensor> x, caps;
  at::Tensor t;
};

Case read_case(const std::string& name) {
  Case c;
  for (int i = 0; golden().count(name + ".in.x." + std::to_string(i)); ++i) {
    c.x.push_back(golden().at(name + ".in.x." + std::to_string(i)));
    c.caps.push_back(golden().at(name + ".in.cap_feats." + std::to_string(i)));
  }
  c.t = golden().at(name + ".in.t");
  return c;
}

using testing::max_abs_diff;

int64_t round_up(int64_t n) { return (n + 31) / 32 * 32; }

// Rows of a `mid` tensor that belong to item i (the rest is batch padding, unspecified).
int64_t mid_rows(const std::string& name, const Case& c, size_t i) {
  const int64_t image = round_up(c.x[i].size(2) / 2 * (c.x[i].size(3) / 2)), caption = round_up(c.caps[i].size(0));
  if (name.rfind("noise_refiner", 0) == 0) return image;
  if (name.rfind("context_refiner", 0) == 0) return caption;
  if (name == "adaln_input") return 1;
  return image + caption;
}

struct ExplicitAttention {
  explicit ExplicitAttention(bool on) { nn::set_explicit_attention(on); }
  ~ExplicitAttention() { nn::set_explicit_attention(false); }
};

LoadOptions fp32() { return testing::test_load_options(); }

TEST(ZImageGolden, OutputsAndIntermediatesBothAttentionPaths) {
  ZImageTransformer model = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  for (bool use_explicit : {false, true}) {
    ExplicitAttention guard(use_explicit);
    for (const std::string name : {"A", "B"}) {
      SCOPED_TRACE(name + (use_explicit ? " explicit attention" : " default attention"));
      Case c = read_case(name);
      NamedTensors mid;
      std::vector<at::Tensor> out = model->forward(c.x, c.t, c.caps, 0, &mid);
      ASSERT_EQ(out.size(), c.x.size());
      for (size_t i = 0; i < out.size(); ++i) {
        const at::Tensor& g = golden().at(name + ".out." + std::to_string(i));
        ASSERT_EQ(out[i].sizes(), g.sizes());
        EXPECT_LE(max_abs_diff(out[i], g), testing::golden_tolerance(g)) << "out." << i;
      }
      int checked = 0;
      for (const auto& [key, value] : mid) {
        const at::Tensor& g = golden().at(name + ".mid." + key);
        ASSERT_EQ(value.sizes(), g.sizes()) << key;
        for (size_t i = 0; i < c.x.size(); ++i) {
          const int64_t rows = mid_rows(key, c, i);
          at::Tensor gi = g[static_cast<int64_t>(i)], ci = value[static_cast<int64_t>(i)];
          if (gi.dim() == 2) gi = gi.narrow(0, 0, rows), ci = ci.narrow(0, 0, rows);
          EXPECT_LE(max_abs_diff(ci, gi), testing::golden_tolerance(gi)) << key << " item " << i;
        }
        ++checked;
      }
      EXPECT_EQ(checked, 6);  // adaln_input, noise_refiner.0, context_refiner.0, layers.0-1, final_layer
    }
  }
}

TEST(ZImageGolden, Bf16ComputeWithinBf16Bound) {
  ZImageTransformer model = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
  EXPECT_EQ(model->x_pad_token.scalar_type(), c10::kBFloat16);
  torch::NoGradGuard no_grad;
  for (const std::string name : {"A", "B"}) {
    Case c = read_case(name);
    std::vector<at::Tensor> out = model->forward(c.x, c.t, c.caps);
    for (size_t i = 0; i < out.size(); ++i) {
      const at::Tensor& g = golden().at(name + ".out." + std::to_string(i));
      EXPECT_EQ(out[i].scalar_type(), c10::kBFloat16);
      // bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.4%); errors compound over the 4 blocks.
      const double err = max_abs_diff(out[i], g), scale = g.abs().max().item<double>();
      EXPECT_LE(err, 0.08 * scale) << name << ".out." << i;
      EXPECT_GT(err, 0.0);  // it really ran in bf16
      // Mean error stays near bf16 rounding.
      EXPECT_LE((out[i].cpu().to(at::kFloat) - g).abs().mean().item<double>(), 0.01 * scale) << name << ".out." << i;
    }
  }
}

TEST(ZImageModel, MixedBatchEqualsItemsRunAlone) {
  ZImageTransformer model = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  Case c = read_case("B");  // two items with different image sizes and caption lengths
  std::vector<at::Tensor> batched = model->forward(c.x, c.t, c.caps);
  for (size_t i = 0; i < c.x.size(); ++i) {
    auto alone = model->forward({c.x[i]}, c.t.narrow(0, static_cast<int64_t>(i), 1), {c.caps[i]});
    EXPECT_LE(max_abs_diff(alone[0], batched[i]), 1e-5) << "item " << i;
  }
}

// Rank-4 adapters with dropout on to_q, to_v and w2 of every block, the base frozen; returns their
// tensors (down, up per adapter).
std::vector<at::Tensor> attach_test_adapters(ZImageTransformer& model, const std::shared_ptr<nn::LoraState>& state) {
  for (auto& p : model->parameters()) p.requires_grad_(false);
  torch::manual_seed(7);
  std::vector<at::Tensor> lora_tensors;
  for (auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<nn::LinearImpl*>(item.value().get());
    if (!linear || !std::regex_search(item.key(), std::regex(R"(attention\.to_(q|v)$|feed_forward\.w2$)"))) continue;
    linear->lora = std::make_shared<nn::LoraAdapter>();
    linear->lora->down = (torch::randn({4, linear->in_features()}) * 0.1).to(linear->weight.device()).requires_grad_(true);
    linear->lora->up = (torch::randn({linear->out_features(), 4}) * 0.1).to(linear->weight.device()).requires_grad_(true);
    linear->lora->alpha = 4;
    linear->lora->dropout = 0.2;
    linear->lora->state = state;
    lora_tensors.push_back(linear->lora->down);
    lora_tensors.push_back(linear->lora->up);
  }
  return lora_tensors;
}

// The outputs of case B and the gradients of `wrt` for a loss on them.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> outputs_and_gradients(ZImageTransformer& model,
                                                                                  const std::vector<at::Tensor>& wrt) {
  Case c = read_case("B");
  for (auto t : wrt) t.mutable_grad() = at::Tensor();
  torch::manual_seed(11);  // LoRA dropout masks
  auto out = model->forward(c.x, c.t, c.caps);
  (out[0].pow(2).mean() + out[1].pow(2).mean()).backward();
  std::vector<at::Tensor> g;
  for (auto& t : wrt) g.push_back(t.grad().clone());
  for (auto& o : out) o = o.detach();
  return {out, g};
}

// Adapters on a few linears (base frozen) plus one trainable base parameter: the gradients with
// per-block recomputation equal those without.
TEST(ZImageModel, GradientCheckpointingGivesTheSameGradients) {
  ZImageTransformer model = load_transformer(kWeights, fp32());
  std::vector<at::Tensor> wrt = attach_test_adapters(model, std::make_shared<nn::LoraState>());
  ASSERT_EQ(wrt.size(), 2u * 3 * (2 + 2 * 1));  // 3 linears in 2 layers + 2 refiner blocks
  model->cap_pad_token.requires_grad_(true);
  wrt.push_back(model->cap_pad_token);
  model->set_gradient_checkpointing(false);
  const auto plain = outputs_and_gradients(model, wrt).second;
  model->set_gradient_checkpointing(true);
  const auto recomputed = outputs_and_gradients(model, wrt).second;
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(recomputed[i].defined());
    EXPECT_GT(plain[i].abs().max().item<double>(), 0.0) << i;
    EXPECT_TRUE(torch::equal(plain[i], recomputed[i])) << i << ": max diff " << max_abs_diff(plain[i], recomputed[i]);
  }
}

// Block offloading on the CPU build: with both main layers offloaded, the same outputs and LoRA
// gradients bit for bit; each layer's weights are away (empty) except while it runs, are fetched
// once for the forward and once for its recompute in backward, and at most two are present at once.
TEST(ZImageModel, OffloadedBlocksGiveTheSameOutputsAndGradients) {
  ZImageTransformer reference = load_transformer(kWeights, fp32());
  ZImageTransformer offloaded = load_transformer(kWeights, LoadOptions{});  // on the host, as model.offload_blocks loads it
  const std::vector<at::Tensor> reference_lora = attach_test_adapters(reference, std::make_shared<nn::LoraState>());
  const std::vector<at::Tensor> offloaded_lora = attach_test_adapters(offloaded, std::make_shared<nn::LoraState>());
  EXPECT_THROW(offloaded->offload_blocks(3, testing::test_device()), Error);  // the golden model has 2 main layers
  offloaded->offload_blocks(2, testing::test_device());
  const nn::BlockOffloader& offloader = *offloaded->offloader();
  auto away = [&](size_t layer) { return offloaded->layers->ptr<TransformerBlockImpl>(layer)->attention->to_q->weight.numel() == 0; };
  EXPECT_TRUE(away(0) && away(1));
  EXPECT_EQ(offloaded->noise_refiner->ptr<TransformerBlockImpl>(0)->attention->to_q->weight.numel(),
            reference->noise_refiner->ptr<TransformerBlockImpl>(0)->attention->to_q->weight.numel());

  reference->set_gradient_checkpointing(true);
  offloaded->set_gradient_checkpointing(true);
  const auto [want_out, want_grad] = outputs_and_gradients(reference, reference_lora);
  const auto [out, grad] = outputs_and_gradients(offloaded, offloaded_lora);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_TRUE(torch::equal(out[i], want_out[i])) << "output " << i;
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_TRUE(torch::equal(grad[i], want_grad[i])) << "gradient " << i;
  EXPECT_EQ(offloader.fetches(), 4u);
  EXPECT_EQ(offloader.max_resident(), 2u);
  EXPECT_EQ(offloader.resident(), 0u);
  EXPECT_TRUE(away(0) && away(1));

  // Sampling (no gradients, no checkpointing) fetches each layer for its run; training without
  // checkpointing is refused before anything is fetched.
  Case c = read_case("B");
  reference->set_gradient_checkpointing(false);
  offloaded->set_gradient_checkpointing(false);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    const auto want = reference->forward(c.x, c.t, c.caps);
    torch::manual_seed(11);
    const auto got = offloaded->forward(c.x, c.t, c.caps);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], want[i])) << "sample output " << i;
  }
  EXPECT_EQ(offloader.fetches(), 6u);
  EXPECT_THROW(offloaded->forward(c.x, c.t, c.caps), Error);
  EXPECT_EQ(offloader.resident(), 0u);
}

// model.weight_dtype: every Linear of the blocks (refiners and main layers) and nothing else is
// stored in 8 bits, and the model then computes what the full-precision model with those weights
// dequantized computes. How far each format moves the golden's outputs is printed beside bf16's
// own error (bench/RESULTS.md); the bounds are about twice what was measured. Offloading the
// 8-bit blocks changes nothing.
TEST(ZImageModel, EightBitBlocksComputeTheirDequantizedWeights) {
  ZImageTransformer bf16 = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
  for (const auto [format, bound] : {std::pair{WeightFormat::int8, 0.04}, {WeightFormat::fp8, 0.16}}) {
    const std::string name = weight_format_name(format);
    ZImageTransformer eight = load_transformer(kWeights, fp32()), dense = load_transformer(kWeights, fp32());
    eight->store_blocks_8bit(format);
    const std::vector<std::string> layers = testing::copy_dequantized(*eight, *dense);
    std::vector<std::string> in_blocks;
    for (const auto& item : dense->named_modules())
      if (item.value()->as<nn::LinearImpl>() && std::regex_search(item.key(), std::regex("^(layers|noise_refiner|context_refiner)\\."))) in_blocks.push_back(item.key());
    std::sort(in_blocks.begin(), in_blocks.end());
    EXPECT_GT(in_blocks.size(), 10u);
    EXPECT_EQ(layers, in_blocks);
    EXPECT_FALSE(eight->cap_linear->is_8bit());
    ZImageTransformer eight16 = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
    eight16->store_blocks_8bit(format);
    torch::NoGradGuard no_grad;
    for (const std::string c : {"A", "B"}) {
      const Case k = read_case(c);
      const auto want = dense->forward(k.x, k.t, k.caps), got = eight->forward(k.x, k.t, k.caps);
      const auto got16 = eight16->forward(k.x, k.t, k.caps), plain16 = bf16->forward(k.x, k.t, k.caps);
      for (size_t i = 0; i < got.size(); ++i) {
        const at::Tensor& g = golden().at(c + ".out." + std::to_string(i));
        const double scale = g.abs().max().item<double>();
        EXPECT_LE(max_abs_diff(got[i], want[i]), 1e-5 * scale) << name << " " << c << i;
        const double err = max_abs_diff(got[i], g) / scale, err16 = max_abs_diff(got16[i], g) / scale,
                     plain = max_abs_diff(plain16[i], g) / scale;
        std::cout << name << " case " << c << i << ": max error / max |golden|: fp32 compute " << err << ", bf16 compute "
                  << err16 << " (bf16 weights: " << plain << ")\n";
        EXPECT_LE(err, bound) << name << " " << c << i;
        EXPECT_LE(err16, bound + 0.08) << name << " " << c << i;
      }
    }
  }
}

// 8-bit blocks under gradient checkpointing, and offloaded, give the gradients of plain 8-bit blocks.
TEST(ZImageModel, OffloadedEightBitBlocksGiveTheSameOutputsAndGradients) {
  ZImageTransformer resident = load_transformer(kWeights, fp32()), offloaded = load_transformer(kWeights, LoadOptions{});
  resident->store_blocks_8bit(WeightFormat::int8);
  offloaded->store_blocks_8bit(WeightFormat::int8);
  const std::vector<at::Tensor> resident_lora = attach_test_adapters(resident, std::make_shared<nn::LoraState>());
  const std::vector<at::Tensor> offloaded_lora = attach_test_adapters(offloaded, std::make_shared<nn::LoraState>());
  offloaded->offload_blocks(2, testing::test_device());
  // A recomputed block keeps its decoded weights for its backward: the same gradients, bit for bit.
  const auto [plain_out, plain_grad] = outputs_and_gradients(resident, resident_lora);
  resident->set_gradient_checkpointing(true);
  offloaded->set_gradient_checkpointing(true);
  const auto [want_out, want_grad] = outputs_and_gradients(resident, resident_lora);
  for (size_t i = 0; i < want_grad.size(); ++i) EXPECT_TRUE(torch::equal(want_grad[i], plain_grad[i])) << "checkpointed gradient " << i;
  const auto [out, grad] = outputs_and_gradients(offloaded, offloaded_lora);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_TRUE(torch::equal(out[i], want_out[i])) << "output " << i;
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_TRUE(torch::equal(grad[i], want_grad[i])) << "gradient " << i;
  EXPECT_EQ(offloaded->layers->ptr<TransformerBlockImpl>(0)->attention->to_q->weight_scale.numel(), 0);  // scales travel too
}

// The golden's diffusers tensors rewritten in the ComfyUI / original layout: renamed, qkv fused,
// inside an all-in-one checkpoint's prefix, with the stray final-norm key.
NamedTensors to_comfy_layout(const std::string& diffusers_dir, const std::string& prefix) {
  Checkpoint ck = Checkpoint::open(diffusers_dir);
  std::map<std::string, at::Tensor> t;
  for (const auto& name : ck.names()) t[name] = ck.get(name);
  NamedTensors out;
  const std::regex block_attention(R"(^(.*\.attention)\.(to_q|to_k|to_v|to_out\.0|norm_q|norm_k)\.weight$)");
  for (const auto& [name, value] : t) {
    std::smatch m;
    std::string comfy = name;
    if (std::regex_match(name, m, block_attention)) {
      const std::string part = m[2];
      if (part == "to_k" || part == "to_v") continue;
      if (part == "to_q") {
        out.emplace_back(prefix + m[1].str() + ".qkv.weight",
                         torch::cat({value, t.at(m[1].str() + ".to_k.weight"), t.at(m[1].str() + ".to_v.weight")}));
        continue;
      }
      comfy = m[1].str() + (part == "to_out.0" ? ".out" : part == "norm_q" ? ".q_norm" : ".k_norm") + ".weight";
    }
    comfy = std::regex_replace(comfy, std::regex(R"(^all_x_embedder\.2-1\.)"), "x_embedder.");
    comfy = std::regex_replace(comfy, std::regex(R"(^all_final_layer\.2-1\.)"), "final_layer.");
    out.emplace_back(prefix + comfy, value);
  }
  out.emplace_back(prefix + "norm_final.weight", torch::ones({t.at("x_pad_token").size(1)}));
  return out;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("dt_zimage_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

TEST(ZImageWeights, ComfyUiSingleFileGivesTheSameOutputsAsTheDiffusersFolder) {
  const fs::path dir = temp_dir("comfy");
  const std::string file = (dir / "z_image.safetensors").string();
  write_safetensors(file, to_comfy_layout(kWeights, "model.diffusion_model."));
  ASSERT_TRUE(is_zimage_checkpoint(Checkpoint::open(file)));
  ZImageConfig config = ZImageConfig::from_json(Checkpoint::open(kWeights).config(), kWeights);
  ZImageTransformer diffusers = load_transformer(kWeights, fp32());
  ZImageTransformer comfy = load_transformer(file, fp32(), config);
  torch::NoGradGuard no_grad;
  Case c = read_case("B");
  auto a = diffusers->forward(c.x, c.t, c.caps), b = comfy->forward(c.x, c.t, c.caps);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  // Without a config.json, the golden's head_dim 32 leaves the RoPE split unknown: a clear error.
  try {
    load_transformer(file, fp32());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// The same as a ComfyUI "scaled fp8" file: every matrix as E4M3 codes with a scale per tensor (the
// largest magnitude maps to 448), the marker and input scales beside them. It gives the outputs of a
// diffusers folder holding the decoded values (code value × scale) bit for bit, and stays within
// fp8's rounding of the original model.
TEST(ZImageWeights, ScaledFp8SingleFileEqualsItsDecodedValues) {
  const fs::path dir = temp_dir("fp8");
  const std::string file = (dir / "z_image_fp8_scaled.safetensors").string();
  testing::write_scaled_fp8(file, to_comfy_layout(kWeights, "model.diffusion_model."), "model.diffusion_model.scaled_fp8",
                            [](const std::string& name) { return name.find("pad_token") == std::string::npos; });
  std::map<std::string, at::Tensor> decoded;  // diffusers names
  // The decoded checkpoint, through the same name mapping, written as a diffusers folder.
  for (const auto& [name, t] : diffusers_tensors(Checkpoint::open(file))) decoded[name] = t.values();
  NamedTensors folder(decoded.begin(), decoded.end());
  write_model_folder((dir / "decoded").string(), "diffusion_pytorch_model.safetensors", folder,
                     Checkpoint::open(kWeights).config());
  EXPECT_GT(Checkpoint::open(file).fp8_scales().size(), 20u);

  ZImageConfig config = ZImageConfig::from_json(Checkpoint::open(kWeights).config(), kWeights);
  ZImageTransformer fp8 = load_transformer(file, fp32(), config);
  ZImageTransformer reference = load_transformer((dir / "decoded").string(), fp32());
  ZImageTransformer original = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  Case c = read_case("B");
  auto a = fp8->forward(c.x, c.t, c.caps), b = reference->forward(c.x, c.t, c.caps), o = original->forward(c.x, c.t, c.caps);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
    // E4M3 keeps 3 mantissa bits (relative step 2^-4 at most): the output moves, but stays the model's.
    const double scale = o[i].abs().max().item<double>();
    EXPECT_GT(max_abs_diff(a[i], o[i]), 1e-4 * scale);
    EXPECT_LT(max_abs_diff(a[i], o[i]), 0.25 * scale);
  }
  fs::remove_all(dir);
}

// Loaded with model.weight_dtype = fp8 (LoadOptions::block_weights), a scaled fp8 file's block
// weights keep their bytes: every block Linear holds the file's E4M3 codes (the fused qkv cut into
// row thirds) and its scale_weight, where quantizing the decoded values again gives other codes
// (the per-tensor scale maps only one row's largest magnitude to 448). The model computes what the
// decoded file computes. Storing in 8 bits as the weights are read gives the codes of storing
// after a full-precision load (int8 here).
TEST(ZImageWeights, Fp8FileLoadedAsFp8KeepsItsBytes) {
  const fs::path dir = temp_dir("fp8-kept");
  const std::string file = (dir / "z_image_fp8_scaled.safetensors").string();
  testing::write_scaled_fp8(file, to_comfy_layout(kWeights, "model.diffusion_model."), "model.diffusion_model.scaled_fp8",
                            [](const std::string& name) { return name.find("pad_token") == std::string::npos; });
  const ZImageConfig config = ZImageConfig::from_json(Checkpoint::open(kWeights).config(), kWeights);
  LoadOptions fp8 = fp32();
  fp8.block_weights = WeightFormat::fp8;
  ZImageTransformer kept = load_transformer(file, fp8, config), decoded = load_transformer(file, fp32(), config);
  ZImageTransformer requantized = load_transformer(file, fp32(), config);
  requantized->store_blocks_8bit(WeightFormat::fp8);

  // The file's bytes by diffusers name, read here without the loader's name mapping.
  const auto raw = SafetensorsFile::open(file);
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> want;  // codes, scale per row
  for (const TensorInfo& t : raw->tensors()) {
    if (t.dtype != "F8_E4M3" || t.shape.size() != 2) continue;
    const std::string stem = t.name.substr(0, t.name.size() - std::strlen(".weight"));
    const at::Tensor codes = raw->get_float8_codes(t.name), scale = raw->get(stem + ".scale_weight");
    const std::string name = diffusers_name(t.name);
    const size_t qkv = name.find(".attention.qkv.weight");
    if (qkv == std::string::npos) {
      want[name] = {codes, scale.expand({codes.size(0)})};
      continue;
    }
    const int64_t rows = codes.size(0) / 3;
    for (int64_t i = 0; i < 3; ++i)
      want[name.substr(0, qkv) + ".attention.to_" + "qkv"[i] + ".weight"] = {codes.narrow(0, i * rows, rows), scale.expand({rows})};
  }
  size_t layers = 0, moved = 0;
  auto requantized_modules = requantized->named_modules();
  for (const auto& item : kept->named_modules()) {
    auto* linear = item.value()->as<nn::LinearImpl>();
    if (!linear || !linear->is_8bit()) continue;
    ++layers;
    const auto& [codes, scale] = want.at(item.key() + ".weight");
    EXPECT_TRUE(torch::equal(linear->weight, codes)) << item.key();
    EXPECT_TRUE(torch::equal(linear->weight_scale, scale)) << item.key();
    moved += !torch::equal(requantized_modules[item.key()]->as<nn::LinearImpl>()->weight, codes);
  }
  EXPECT_GT(layers, 10u);
  EXPECT_GT(moved, layers / 2);
  torch::NoGradGuard no_grad;
  const Case c = read_case("B");
  const auto got = kept->forward(c.x, c.t, c.caps), full = decoded->forward(c.x, c.t, c.caps);
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(max_abs_diff(got[i], full[i]), 1e-5 * full[i].abs().max().item<double>()) << i;

  LoadOptions int8 = fp32();
  int8.block_weights = WeightFormat::int8;
  ZImageTransformer on_load = load_transformer(kWeights, int8), after_load = load_transformer(kWeights, fp32());
  after_load->store_blocks_8bit(WeightFormat::int8);
  const auto after = after_load->named_parameters();
  for (const auto& item : on_load->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), after[item.key()])) << item.key();
  const auto after_buffers = after_load->named_buffers();
  for (const auto& item : on_load->named_buffers()) EXPECT_TRUE(torch::equal(item.value(), after_buffers[item.key()])) << item.key();
  fs::remove_all(dir);
}

TEST(ZImageWeights, SingleFileConfigIsInferredFromShapes) {
  const fs::path dir = temp_dir("infer");
  ZImageConfig config;  // released layout (head_dim 128, axes 32/48/48), tiny sizes
  config.dim = 256;
  config.n_heads = config.n_kv_heads = 2;
  config.n_layers = 3;
  config.n_refiner_layers = 1;
  config.cap_feat_dim = 24;
  write_random_checkpoint((dir / "base").string(), config, 5);
  const std::string file = (dir / "single.safetensors").string();
  write_safetensors(file, to_comfy_layout((dir / "base").string(), ""));
  ZImageTransformer loaded = load_transformer(file, fp32());
  EXPECT_EQ(loaded->config().to_json(), config.to_json());
  ZImageTransformer folder = load_transformer((dir / "base").string(), fp32());
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  std::vector<at::Tensor> x = {torch::randn({16, 1, 4, 6})}, caps = {torch::randn({5, 24})};
  EXPECT_TRUE(torch::equal(loaded->forward(x, torch::tensor({0.4f}), caps)[0], folder->forward(x, torch::tensor({0.4f}), caps)[0]));
  fs::remove_all(dir);
}

TEST(ZImageWeights, StrictLoaderListsMissingUnexpectedAndWrongShapes) {
  const fs::path dir = temp_dir("strict");
  Checkpoint ck = Checkpoint::open(kWeights);
  NamedTensors tensors;
  for (const auto& name : ck.names()) {
    if (name == "layers.1.feed_forward.w3.weight") continue;                             // missing
    at::Tensor t = ck.get(name);
    if (name == "cap_embedder.1.weight") t = torch::zeros({t.size(0), t.size(1) + 1});  // wrong shape
    tensors.emplace_back(name, t);
  }
  tensors.emplace_back("layers.7.attention.to_q.weight", torch::zeros({64, 64}));  // unexpected
  fs::copy_file(kWeights + "/config.json", dir / "config.json");
  write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
  try {
    load_transformer(dir.string(), fp32());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : std::vector<std::string>{"1 missing (layers.1.feed_forward.w3.weight)",
                                                            "1 unexpected (layers.7.attention.to_q.weight)",
                                                            "cap_embedder.1.weight [64, 49] vs model [64, 48]", dir.string()})
      EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(ZImageWeights, RandomCheckpointIsSeededAndLoadsInEveryStoredDtype) {
  const fs::path dir = temp_dir("random");
  ZImageConfig config = ZImageConfig::from_json(Checkpoint::open(kWeights).config(), kWeights);
  auto bytes = [](const fs::path& p) {
    std::ifstream in(p / "diffusion_pytorch_model.safetensors", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  write_random_checkpoint((dir / "a").string(), config, 1);
  write_random_checkpoint((dir / "b").string(), config, 1);
  write_random_checkpoint((dir / "c").string(), config, 2);
  EXPECT_EQ(bytes(dir / "a"), bytes(dir / "b"));
  EXPECT_NE(bytes(dir / "a"), bytes(dir / "c"));
  EXPECT_EQ(Checkpoint::open((dir / "a").string()).names(), Checkpoint::open(kWeights).names());
  torch::NoGradGuard no_grad;
  Case c = read_case("A");
  ZImageTransformer reference = load_transformer((dir / "a").string(), fp32());
  auto expected = reference->forward(c.x, c.t, c.caps)[0];
  for (auto stored : {c10::kBFloat16, c10::kHalf}) {
    write_random_checkpoint((dir / "d").string(), config, 1, stored);
    EXPECT_EQ(Checkpoint::open((dir / "d").string()).info("x_pad_token").dtype, stored == c10::kHalf ? "F16" : "BF16");
    auto out = load_transformer((dir / "d").string(), fp32())->forward(c.x, c.t, c.caps)[0];
    EXPECT_LE(max_abs_diff(out, expected), 0.1 * expected.abs().max().item<double>());  // weights rounded, compute fp32
  }
  fs::remove_all(dir);
}

TEST(ZImageFamily, VelocityIsTheNegatedOutputAtOneMinusSigma) {
  const Family& family = family_by_name("zimage");
  EXPECT_EQ(&detect_family(kWeights), &family);
  auto denoiser = family.load_transformer(kWeights, fp32());
  for (const auto& p : denoiser->module().parameters()) EXPECT_FALSE(p.requires_grad());
  torch::NoGradGuard no_grad;
  Case c = read_case("A");  // t = 0.3 ⇒ σ = 0.7
  at::Tensor v = denoiser->velocity(c.x[0].squeeze(1).unsqueeze(0), torch::tensor({0.7f}), c.caps);
  const at::Tensor& g = golden().at("A.out.0");
  EXPECT_EQ(v.scalar_type(), at::kFloat);
  EXPECT_LE(max_abs_diff(v, -g.squeeze(1).unsqueeze(0)), testing::golden_tolerance(g));
  EXPECT_EQ(denoiser->identity().rfind("zimage:", 0), 0u);
  EXPECT_EQ(denoiser->identity().size(), 7u + 64);
}

TEST(ZImageFamily, ScheduleShiftShapesPresetsAndDefaults) {
  const Family& family = zimage_family();
  // Turbo, 8 steps: σ' = 1, 0.955, 0.9, 0.833, 0.75, 0.643, 0.5, 0.3, then 0 (specs/z-image.md §7).
  std::vector<double> expected = {1, 21.0 / 22, 0.9, 5.0 / 6, 0.75, 9.0 / 14, 0.5, 0.3, 0};
  auto sigmas = family.sigmas(8, 1024, 1024);
  ASSERT_EQ(sigmas.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(sigmas[i], expected[i], 1e-12) << i;
  // training.md §4: mu = 0.5 at 256 tokens, 1.15 at 4096 (1024²), linear between; 512² has 1024.
  EXPECT_NEAR(family.dynamic_shift(512, 512), std::exp(0.5 + 0.65 * 768 / 3840), 1e-12);
  EXPECT_NEAR(family.dynamic_shift(1024, 1024), std::exp(1.15), 1e-12);
  EXPECT_EQ(family.latent_shape(1024, 768), (std::vector<int64_t>{16, 128, 96}));
  EXPECT_EQ(family.pixel_multiple(), 16);
  auto d = family.defaults();
  EXPECT_EQ(d.transfer_cfg, 3.0);
  EXPECT_EQ(d.sample_steps_distilled, 8);
  EXPECT_EQ(d.sample_steps_base, 50);

  // Presets over the golden model's linears (2 main layers, 1 refiner pair), searched anywhere.
  ZImageTransformer model = load_transformer(kWeights, fp32());
  std::map<std::string, int> chosen;
  int linears = 0;
  for (const auto& item : model->named_modules()) {
    if (!dynamic_cast<nn::LinearImpl*>(item.value().get())) continue;
    ++linears;
    for (const auto& [preset, pattern] : family.lora_presets())
      if (std::regex_search(item.key(), std::regex(pattern))) ++chosen[preset];
  }
  EXPECT_EQ(chosen["full"], linears);
  EXPECT_EQ(chosen["blocks"], 2 * 8);     // q, k, v, out, w1, w2, w3, adaLN per main layer
  EXPECT_EQ(chosen["attn-mlp"], 2 * 7);   // no adaLN, no refiners
  EXPECT_EQ(chosen["attn-only"], 2 * 4);
}

// The CLI contract: golden outputs through `deltatrain forward`, and a bad model is one error line.
TEST(ZImageCli, ForwardWritesGoldenOutputsAndRejectsBadModels) {
  const fs::path dir = temp_dir("cli");
  const std::string out = (dir / "B.safetensors").string();
  const std::string run = std::string(DT_BINARY) + " forward --component zimage-transformer --inputs " + kGolden +
                          "/io.safetensors --case B --output " + out;
  ASSERT_EQ(std::system((run + " --model " + kWeights).c_str()), 0);
  auto written = load_safetensors(out);
  for (const char* name : {"B.out.0", "B.out.1"})
    EXPECT_LE(max_abs_diff(written.at(name), golden().at(name)), testing::golden_tolerance(golden().at(name))) << name;
  fs::create_directories(dir / "empty");
  const std::string err = (dir / "err.txt").string();
  const int status = std::system((run + " --model " + (dir / "empty").string() + " 2> " + err).c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream in(err);
  std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_NE(text.find("empty"), std::string::npos) << text;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt::zimage
