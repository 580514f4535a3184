// The FLUX.2 transformer against the diffusers golden (shared/golden/flux2_transformer), its
// checkpoint layouts, and the family adapter (time and output conventions, schedule, shift).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/flux2/conditioning.h"
#include "models/flux2/family.h"
#include "models/flux2/weights.h"
#include "nn/attention.h"
#include "nn/load_state.h"
#include "nn/offload.h"
#include "testing/device.h"
#include "testing/fp8.h"
#include "testing/weights_8bit.h"

namespace dt::flux2 {
namespace {

namespace fs = std::filesystem;
const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/flux2_transformer";
const std::string kWeights = kGolden + "/weights";

std::map<std::string, at::Tensor>& golden() {
  static auto io = load_safetensors(kGolden + "/io.safetensors");
  return io;
}

struct Case {
  at::Tensor hidden, text, timestep, img_ids, txt_ids;
};

Case read_case(const std::string& name) {
  auto in = [&](const std::string& t) { return golden().at(name + ".in." + t); };
  return {in("hidden_states"), in("encoder_hidden_states"), in("timestep"), in("img_ids")[0], in("txt_ids")[0]};
}

at::Tensor run(Flux2Transformer& model, const Case& c, NamedTensors* mid = nullptr) {
  return model->forward(c.hidden, c.text, c.timestep, c.img_ids, c.txt_ids, mid);
}

using testing::max_abs_diff;

struct ExplicitAttention {
  explicit ExplicitAttention(bool on) { nn::set_explicit_attention(on); }
  ~ExplicitAttention() { nn::set_explicit_attention(false); }
};

LoadOptions fp32() { return testing::test_load_options(); }

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("dt_flux2_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::map<std::string, at::Tensor> golden_weights() {
  Checkpoint ck = Checkpoint::open(kWeights);
  std::map<std::string, at::Tensor> t;
  for (const auto& name : ck.names()) t[name] = ck.get(name);
  return t;
}

TEST(Flux2Golden, OutputsAndIntermediatesBothAttentionPaths) {
  Flux2Transformer model = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  for (bool use_explicit : {false, true}) {
    ExplicitAttention guard(use_explicit);
    for (const std::string name : {"A", "B"}) {  // B: batch 2, reference-image tokens after the noisy ones
      SCOPED_TRACE(name + (use_explicit ? " explicit attention" : " default attention"));
      NamedTensors mid;
      at::Tensor out = run(model, read_case(name), &mid);
      const at::Tensor& g = golden().at(name + ".out");
      ASSERT_EQ(out.sizes(), g.sizes());
      EXPECT_LE(max_abs_diff(out, g), testing::golden_tolerance(g)) << "out";
      int checked = 0;
      for (const auto& [key, value] : mid) {
        auto it = golden().find(name + ".mid." + key);
        if (it == golden().end()) continue;  // pos_embed is stored for case A only
        ASSERT_EQ(value.sizes(), it->second.sizes()) << key;
        EXPECT_LE(max_abs_diff(value, it->second), testing::golden_tolerance(it->second)) << key;
        ++checked;
      }
      // temb, 3 modulations, 2 × 2 double-block streams, 2 single blocks, norm_out (+ 4 RoPE tables)
      EXPECT_EQ(checked, name == "A" ? 15 : 11);
    }
  }
}

TEST(Flux2Golden, Bf16ComputeWithinBf16Bound) {
  Flux2Transformer model = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
  torch::NoGradGuard no_grad;
  for (const std::string name : {"A", "B"}) {
    at::Tensor out = run(model, read_case(name));
    const at::Tensor& g = golden().at(name + ".out");
    EXPECT_EQ(out.scalar_type(), c10::kBFloat16);
    const double err = max_abs_diff(out, g), scale = g.abs().max().item<double>();
    EXPECT_LE(err, 0.08 * scale) << name;  // 8 significant bits, compounded over 4 blocks
    EXPECT_GT(err, 0.0);                    // it really ran in bf16
    EXPECT_LE((out.cpu().to(at::kFloat) - g).abs().mean().item<double>(), 0.01 * scale) << name;
  }
}

// Items of a batch do not interact: case B's items alone give the batched outputs.
TEST(Flux2Model, BatchItemsAreIndependent) {
  Flux2Transformer model = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  Case c = read_case("B");
  at::Tensor batched = run(model, c);
  for (int64_t i = 0; i < 2; ++i) {
    Case one{c.hidden.narrow(0, i, 1), c.text.narrow(0, i, 1), c.timestep.narrow(0, i, 1), c.img_ids, c.txt_ids};
    EXPECT_LE(max_abs_diff(run(model, one), batched.narrow(0, i, 1)), 1e-5) << i;
  }
}

// Rank-4 adapters with dropout on linears of both block kinds and on a shared modulation layer,
// the base frozen; returns their tensors (down, up per adapter).
std::vector<at::Tensor> attach_test_adapters(Flux2Transformer& model, const std::shared_ptr<nn::LoraState>& state) {
  for (auto& p : model->parameters()) p.requires_grad_(false);
  torch::manual_seed(7);
  std::vector<at::Tensor> lora_tensors;
  for (auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<nn::LinearImpl*>(item.value().get());
    if (!linear || !std::regex_search(item.key(), std::regex(R"(attn\.(to_q|add_v_proj|to_qkv_mlp_proj)$|ff_context\.linear_out$|single_stream_modulation)")))
      continue;
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

// The output of case B and the gradients of `wrt` for a loss on it.
std::pair<at::Tensor, std::vector<at::Tensor>> output_and_gradients(Flux2Transformer& model, const std::vector<at::Tensor>& wrt) {
  Case c = read_case("B");
  for (auto t : wrt) t.mutable_grad() = at::Tensor();
  torch::manual_seed(11);  // LoRA dropout masks
  at::Tensor out = run(model, c);
  out.pow(2).mean().backward();
  std::vector<at::Tensor> g;
  for (auto& t : wrt) g.push_back(t.grad().clone());
  return {out.detach(), g};
}

// The gradients with per-block recomputation equal those without.
TEST(Flux2Model, GradientCheckpointingGivesTheSameGradients) {
  Flux2Transformer model = load_transformer(kWeights, fp32());
  const std::vector<at::Tensor> lora_tensors = attach_test_adapters(model, std::make_shared<nn::LoraState>());
  ASSERT_EQ(lora_tensors.size(), 2u * (2 * 3 + 2 + 1));
  model->set_gradient_checkpointing(false);
  const auto plain = output_and_gradients(model, lora_tensors).second;
  model->set_gradient_checkpointing(true);
  const auto recomputed = output_and_gradients(model, lora_tensors).second;
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(recomputed[i].defined());
    EXPECT_GT(plain[i].abs().max().item<double>(), 0.0) << i;
    EXPECT_TRUE(torch::equal(plain[i], recomputed[i])) << i << ": max diff " << max_abs_diff(plain[i], recomputed[i]);
  }
}

// Block offloading on the CPU build, across both block kinds (the last double-stream block and the
// two single-stream ones): the same output and LoRA gradients bit for bit; each block is fetched
// once for the forward and once for its recompute, at most two at once, and away after the step.
TEST(Flux2Model, OffloadedBlocksGiveTheSameOutputsAndGradients) {
  Flux2Transformer reference = load_transformer(kWeights, fp32());
  Flux2Transformer offloaded = load_transformer(kWeights, LoadOptions{});  // on the host, as model.offload_blocks loads it
  const std::vector<at::Tensor> reference_lora = attach_test_adapters(reference, std::make_shared<nn::LoraState>());
  const std::vector<at::Tensor> offloaded_lora = attach_test_adapters(offloaded, std::make_shared<nn::LoraState>());
  ASSERT_EQ(offloaded->transformer_blocks->size() + offloaded->single_transformer_blocks->size(), 4u);
  EXPECT_THROW(offloaded->offload_blocks(5, testing::test_device()), Error);
  offloaded->offload_blocks(3, testing::test_device());
  const nn::BlockOffloader& offloader = *offloaded->offloader();
  EXPECT_EQ(offloader.size(), 3u);
  EXPECT_GT(offloaded->transformer_blocks->ptr<TransformerBlockImpl>(0)->attn->to_q->weight.numel(), 0);
  EXPECT_EQ(offloaded->transformer_blocks->ptr<TransformerBlockImpl>(1)->attn->to_q->weight.numel(), 0);

  reference->set_gradient_checkpointing(true);
  offloaded->set_gradient_checkpointing(true);
  const auto [want_out, want_grad] = output_and_gradients(reference, reference_lora);
  const auto [out, grad] = output_and_gradients(offloaded, offloaded_lora);
  EXPECT_TRUE(torch::equal(out, want_out));
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_TRUE(torch::equal(grad[i], want_grad[i])) << "gradient " << i;
  EXPECT_EQ(offloader.fetches(), 6u);
  EXPECT_EQ(offloader.max_resident(), 2u);
  EXPECT_EQ(offloader.resident(), 0u);

  reference->set_gradient_checkpointing(false);
  offloaded->set_gradient_checkpointing(false);
  const Case c = read_case("B");
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    const at::Tensor want = run(reference, c);
    torch::manual_seed(11);
    EXPECT_TRUE(torch::equal(run(offloaded, c), want));
  }
  EXPECT_THROW(run(offloaded, c), Error);  // training without checkpointing
  EXPECT_EQ(offloader.resident(), 0u);
}

// model.weight_dtype: every Linear of the double- and single-stream blocks and nothing else is
// stored in 8 bits; the model computes what the full-precision model with those weights
// dequantized computes; the golden error is printed beside bf16's (bench/RESULTS.md).
TEST(Flux2Model, EightBitBlocksComputeTheirDequantizedWeights) {
  Flux2Transformer bf16 = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
  for (const auto [format, bound] : {std::pair{WeightFormat::int8, 0.04}, {WeightFormat::fp8, 0.16}}) {
    const std::string name = weight_format_name(format);
    Flux2Transformer eight = load_transformer(kWeights, fp32()), dense = load_transformer(kWeights, fp32());
    eight->store_blocks_8bit(format);
    const std::vector<std::string> layers = testing::copy_dequantized(*eight, *dense);
    std::vector<std::string> in_blocks;
    for (const auto& item : dense->named_modules())
      if (item.value()->as<nn::LinearImpl>() && std::regex_search(item.key(), std::regex("^(single_)?transformer_blocks\\."))) in_blocks.push_back(item.key());
    std::sort(in_blocks.begin(), in_blocks.end());
    EXPECT_GT(in_blocks.size(), 10u);
    EXPECT_EQ(layers, in_blocks);
    EXPECT_FALSE(eight->x_embedder->is_8bit());
    Flux2Transformer eight16 = load_transformer(kWeights, testing::test_load_options(c10::kBFloat16));
    eight16->store_blocks_8bit(format);
    torch::NoGradGuard no_grad;
    for (const std::string c : {"A", "B"}) {
      const Case k = read_case(c);
      const at::Tensor& g = golden().at(c + ".out");
      const double scale = g.abs().max().item<double>();
      EXPECT_LE(max_abs_diff(run(eight, k), run(dense, k)), 1e-5 * scale) << name << " " << c;
      const double err = max_abs_diff(run(eight, k), g) / scale, err16 = max_abs_diff(run(eight16, k), g) / scale,
                   plain = max_abs_diff(run(bf16, k), g) / scale;
      std::cout << name << " case " << c << ": max error / max |golden|: fp32 compute " << err << ", bf16 compute " << err16
                << " (bf16 weights: " << plain << ")\n";
      EXPECT_LE(err, bound) << name << " " << c;
      EXPECT_LE(err16, bound + 0.08) << name << " " << c;
    }
  }
}

// A BFL / ComfyUI single file (original names, fused qkv, swapped final halves, all-in-one prefix)
// loads to the same model; without config.json every size is inferred from the shapes.
TEST(Flux2Weights, OriginalSingleFileGivesTheSameOutputs) {
  const fs::path dir = temp_dir("original");
  const std::string file = (dir / "flux-2-klein-tiny.safetensors").string();
  write_original_file(file, golden_weights(), "model.diffusion_model.");
  Checkpoint ck = Checkpoint::open(file);
  ASSERT_TRUE(is_flux2_checkpoint(ck));
  EXPECT_TRUE(ck.contains("model.diffusion_model.double_blocks.1.txt_attn.qkv.weight"));
  EXPECT_TRUE(ck.contains("model.diffusion_model.single_blocks.0.norm.key_norm.scale"));
  EXPECT_TRUE(ck.contains("model.diffusion_model.final_layer.adaLN_modulation.1.weight"));
  EXPECT_FALSE(ck.contains("model.diffusion_model.transformer_blocks.0.attn.to_q.weight"));
  EXPECT_EQ(describe_checkpoint(ck), "flux2-klein transformer, original BFL names, inner dim 64, 2 double + 2 single blocks");
  EXPECT_EQ(describe_checkpoint(Checkpoint::open(kWeights)), "flux2-klein transformer, diffusers names, inner dim 64, 2 double + 2 single blocks");
  Flux2Transformer diffusers = load_transformer(kWeights, fp32());
  Flux2Transformer original = load_transformer(file, fp32());
  EXPECT_EQ(original->config().to_json(), Flux2Config::from_json(Checkpoint::open(kWeights).config(), kWeights).to_json());
  torch::NoGradGuard no_grad;
  Case c = read_case("B");
  EXPECT_TRUE(torch::equal(run(diffusers, c), run(original, c)));
  EXPECT_EQ(&detect_family(file), &flux2_family());
  fs::remove_all(dir);
}

// The same file as ComfyUI's "scaled fp8" klein checkpoints: every matrix as E4M3 codes with a scale
// per tensor (largest magnitude → 448), the marker and input scales beside them. Its outputs are
// those of a diffusers folder holding the decoded values (code value × scale), bit for bit.
TEST(Flux2Weights, ScaledFp8OriginalFileEqualsItsDecodedValues) {
  const fs::path dir = temp_dir("fp8");
  const std::string plain = (dir / "plain.safetensors").string(), file = (dir / "klein_fp8_scaled.safetensors").string();
  write_original_file(plain, golden_weights(), "model.diffusion_model.");
  const auto plain_tensors = load_safetensors(plain);
  testing::write_scaled_fp8(file, NamedTensors(plain_tensors.begin(), plain_tensors.end()), "model.diffusion_model.scaled_fp8",
                            [](const std::string&) { return true; });
  NamedTensors decoded;
  for (const auto& [name, t] : diffusers_tensors(Checkpoint::open(file))) decoded.emplace_back(name, t.values());
  write_model_folder((dir / "decoded").string(), "diffusion_pytorch_model.safetensors", decoded,
                     Checkpoint::open(kWeights).config());
  EXPECT_GT(Checkpoint::open(file).fp8_scales().size(), 20u);
  Flux2Transformer fp8 = load_transformer(file, fp32()), reference = load_transformer((dir / "decoded").string(), fp32());
  Flux2Transformer original = load_transformer(kWeights, fp32());
  torch::NoGradGuard no_grad;
  const Case c = read_case("B");
  const at::Tensor a = run(fp8, c), o = run(original, c);
  EXPECT_TRUE(torch::equal(a, run(reference, c)));
  const double scale = o.abs().max().item<double>();
  EXPECT_GT(max_abs_diff(a, o), 1e-4 * scale);  // E4M3's 3 mantissa bits move the output...
  EXPECT_LT(max_abs_diff(a, o), 0.25 * scale);  // ...but it stays the model's
  fs::remove_all(dir);
}

// Loaded with model.weight_dtype = fp8 (LoadOptions::block_weights), the same file's block weights
// keep its bytes: every 8-bit layer holds one of the file's per-tensor scales on every row, and its
// codes times that scale are the decoded file's weight exactly, which leaves one code per value
// (quantizing the decoded weights again would scale each row by its own largest magnitude).
TEST(Flux2Weights, ScaledFp8FileLoadedAsFp8KeepsItsBytes) {
  const fs::path dir = temp_dir("fp8-kept");
  const std::string plain = (dir / "plain.safetensors").string(), file = (dir / "klein_fp8_scaled.safetensors").string();
  write_original_file(plain, golden_weights(), "model.diffusion_model.");
  const auto plain_tensors = load_safetensors(plain);
  testing::write_scaled_fp8(file, NamedTensors(plain_tensors.begin(), plain_tensors.end()), "model.diffusion_model.scaled_fp8",
                            [](const std::string&) { return true; });
  std::set<float> file_scales;
  const auto raw = SafetensorsFile::open(file);
  for (const TensorInfo& t : raw->tensors())
    if (t.name.find(".scale_weight") != std::string::npos) file_scales.insert(raw->get(t.name).item<float>());
  LoadOptions fp8 = fp32();
  fp8.block_weights = WeightFormat::fp8;
  Flux2Transformer kept = load_transformer(file, fp8), decoded = load_transformer(file, fp32());
  auto decoded_modules = decoded->named_modules();
  size_t layers = 0;
  for (const auto& item : kept->named_modules()) {
    auto* linear = item.value()->as<nn::LinearImpl>();
    if (!linear || !linear->is_8bit()) continue;
    ++layers;
    const float s = linear->weight_scale[0].item<float>();
    EXPECT_TRUE(file_scales.count(s) && linear->weight_scale.eq(s).all().item<bool>()) << item.key();
    EXPECT_TRUE(torch::equal(nn::dequantize_rows(linear->weight, linear->weight_scale),
                             decoded_modules[item.key()]->as<nn::LinearImpl>()->weight)) << item.key();
  }
  EXPECT_GT(layers, 10u);
  torch::NoGradGuard no_grad;
  const Case c = read_case("B");
  const at::Tensor got = run(kept, c), full = run(decoded, c);
  EXPECT_LE(max_abs_diff(got, full), 1e-5 * full.abs().max().item<double>());
  fs::remove_all(dir);
}

// A misread layout (here q and k of one block exchanged) is far outside the tolerance.
TEST(Flux2Weights, MisreadLayoutIsCaught) {
  auto weights = golden_weights();
  std::swap(weights.at("transformer_blocks.0.attn.to_q.weight"), weights.at("transformer_blocks.0.attn.to_k.weight"));
  Flux2Transformer swapped(Flux2Config::from_json(Checkpoint::open(kWeights).config(), kWeights));
  nn::load_state(*swapped, {weights.begin(), weights.end()}, "test", c10::kCPU, c10::kFloat);
  torch::NoGradGuard no_grad;
  const at::Tensor& g = golden().at("A.out");
  EXPECT_GT(max_abs_diff(run(swapped, read_case("A")), g), 100 * testing::golden_tolerance(g));
}

TEST(Flux2Weights, StrictLoaderAndBadConfigs) {
  const fs::path dir = temp_dir("strict");
  Checkpoint ck = Checkpoint::open(kWeights);
  NamedTensors tensors;
  for (const auto& name : ck.names()) {
    if (name == "single_transformer_blocks.1.attn.norm_k.weight") continue;  // missing
    at::Tensor t = ck.get(name);
    if (name == "proj_out.weight") t = torch::zeros({t.size(0), t.size(1) + 1});  // wrong shape
    tensors.emplace_back(name, t);
  }
  fs::copy_file(kWeights + "/config.json", dir / "config.json");
  write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
  try {
    load_transformer(dir.string(), fp32());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : std::vector<std::string>{"single_transformer_blocks.1.attn.norm_k.weight", "proj_out.weight", dir.string()})
      EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
  nlohmann::json config = Checkpoint::open(kWeights).config();
  config["guidance_embeds"] = true;
  EXPECT_THROW(Flux2Config::from_json(config, "config.json"), Error);  // FLUX.2 [dev]
  config["guidance_embeds"] = false;
  config["axes_dims_rope"] = {8, 8, 8};
  EXPECT_THROW(Flux2Config::from_json(config, "config.json"), Error);
  config["axes_dims_rope"] = "wide";
  EXPECT_THROW(Flux2Config::from_json(config, "config.json"), Error);
  // Inputs that do not fit the model are errors, not crashes.
  Flux2Transformer model = load_transformer(kWeights, fp32());
  Case c = read_case("A");
  EXPECT_THROW(model->forward(c.hidden.narrow(2, 0, 64), c.text, c.timestep, c.img_ids, c.txt_ids), Error);
  EXPECT_THROW(model->forward(c.hidden, c.text, c.timestep, c.img_ids.narrow(0, 0, 5), c.txt_ids), Error);
  EXPECT_THROW(model->forward(c.hidden, c.text, torch::zeros({2}), c.img_ids, c.txt_ids), Error);
  fs::remove_all(dir);
}

TEST(Flux2Weights, RandomCheckpointIsSeeded) {
  const fs::path dir = temp_dir("random");
  Flux2Config config = Flux2Config::from_json(Checkpoint::open(kWeights).config(), kWeights);
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
  fs::remove_all(dir);
}

TEST(Flux2Model, PositionIdsAreThePipelines) {
  // Case B: a 4×6 noisy grid, then a 4×4 reference image at t = 10; 10 text tokens.
  at::Tensor ids = torch::cat({image_ids(4, 6), image_ids(4, 4, 10)});
  EXPECT_TRUE(torch::equal(ids, golden().at("B.in.img_ids")[0]));
  EXPECT_TRUE(torch::equal(text_ids(10), golden().at("B.in.txt_ids")[0]));
  EXPECT_TRUE(torch::equal(image_ids(6, 8), golden().at("A.in.img_ids")[0]));
}

// The family adapter: σ in, the model's output is v already; latents [B, 128, h, w] ↔ tokens.
TEST(Flux2Family, VelocityIsTheOutputOnPackedLatents) {
  const Family& family = family_by_name("flux2-klein");
  EXPECT_EQ(&detect_family(kWeights), &family);
  auto denoiser = family.load_transformer(kWeights, fp32());
  for (const auto& p : denoiser->module().parameters()) EXPECT_FALSE(p.requires_grad());
  torch::NoGradGuard no_grad;
  Case c = read_case("A");  // 6×8 token grid
  at::Tensor x = unpack_tokens(c.hidden, 6, 8);
  at::Tensor v = denoiser->velocity(x, c.timestep, {c.text[0]});
  const at::Tensor& g = golden().at("A.out");
  EXPECT_EQ(v.sizes(), (c10::IntArrayRef{1, 128, 6, 8}));
  EXPECT_LE(max_abs_diff(pack_tokens(v), g), testing::golden_tolerance(g));
  EXPECT_THROW(denoiser->velocity(x, c.timestep, {c.text[0], c.text[0]}), Error);
  EXPECT_EQ(denoiser->identity().rfind("flux2:", 0), 0u);
}

TEST(Flux2Family, ScheduleShiftShapesPresetsAndDefaults) {
  const Family& family = flux2_family();
  // specs/flux2.md §7 worked values: 1024² (4096 tokens) and 512² (1024 tokens).
  EXPECT_NEAR(empirical_mu(4096, 4), 2.291, 5e-4);
  EXPECT_NEAR(empirical_mu(4096, 50), 2.023, 5e-4);
  EXPECT_NEAR(empirical_mu(1024, 4), 2.031, 5e-4);
  EXPECT_NEAR(empirical_mu(1024, 50), 1.702, 5e-4);
  EXPECT_NEAR(empirical_mu(8192, 4), 0.00016927 * 8192 + 0.45666666, 1e-12);  // above 4300 tokens
  std::vector<double> expected = {1.0, 0.967, 0.908, 0.767, 0.0};
  auto sigmas = family.sigmas(4, 1024, 1024);
  ASSERT_EQ(sigmas.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(sigmas[i], expected[i], 5e-4) << i;
  // OneTrainer's dynamic shift: 512 px → 1.88, 1024 px → 3.16.
  EXPECT_NEAR(family.dynamic_shift(512, 512), 1.88, 5e-3);
  EXPECT_NEAR(family.dynamic_shift(1024, 1024), 3.16, 5e-3);
  EXPECT_EQ(family.latent_shape(1024, 768), (std::vector<int64_t>{128, 64, 48}));
  EXPECT_EQ(family.pixel_multiple(), 16);
  auto d = family.defaults();
  EXPECT_EQ(d.transfer_cfg, 2.5);
  EXPECT_EQ(d.sample_steps_distilled, 4);
  EXPECT_EQ(d.sample_steps_base, 50);

  Flux2Transformer model = load_transformer(kWeights, fp32());
  std::map<std::string, int> chosen;
  int linears = 0;
  for (const auto& item : model->named_modules()) {
    if (!dynamic_cast<nn::LinearImpl*>(item.value().get())) continue;
    ++linears;
    for (const auto& [preset, pattern] : family.lora_presets())
      if (std::regex_search(item.key(), std::regex(pattern))) ++chosen[preset];
  }
  EXPECT_EQ(linears, 9 + 2 * 12 + 2 * 2);
  EXPECT_EQ(chosen["full"], linears);
  EXPECT_EQ(chosen["blocks"], 2 * 12 + 2 * 2);  // modulation, embedders and output layer excluded
  EXPECT_EQ(chosen["attn-mlp"], chosen["blocks"]);
  EXPECT_EQ(chosen["attn-only"], 2 * 8 + 2 * 2);
}

TEST(Flux2Cli, ForwardWritesGoldenOutputs) {
  const fs::path dir = temp_dir("cli");
  for (const std::string name : {"A", "B"}) {
    const std::string out = (dir / (name + ".safetensors")).string();
    const std::string run = std::string(DT_BINARY) + " forward --component flux2-transformer --model " + kWeights +
                            " --inputs " + kGolden + "/io.safetensors --case " + name + " --output " + out;
    ASSERT_EQ(std::system(run.c_str()), 0) << run;
    auto written = load_safetensors(out);
    const at::Tensor& g = golden().at(name + ".out");
    EXPECT_LE(max_abs_diff(written.at(name + ".out"), g), testing::golden_tolerance(g)) << name;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt::flux2
