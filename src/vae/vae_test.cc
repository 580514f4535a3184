#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/flux2/conditioning.h"
#include "testing/support.h"
#include "vae/load.h"
#include "vae/random_vae.h"

namespace dt::vae {
namespace {

namespace fs = std::filesystem;
// The klein pipeline's latent handling lives with its family; its golden is this VAE's.
using flux2::flux2_decode_latents;
using flux2::flux2_denormalize;
using flux2::flux2_encode_latents;
using flux2::flux2_normalize;
using flux2::pack_tokens;
using flux2::patchify_2x2;
using flux2::unpack_tokens;
using flux2::unpatchify_2x2;

std::string golden(const std::string& name) { return std::string(DT_SHARED_DIR) + "/golden/" + name; }

struct Golden {
  std::string weights;
  std::map<std::string, at::Tensor> io;
  explicit Golden(const std::string& name)
      : weights(golden(name + "/weights")), io(load_safetensors(golden(name + "/io.safetensors"))) {}
  const at::Tensor& operator[](const std::string& key) const { return io.at(key); }
};

// The goldens' rule: max|c − g| ≤ atol + rtol·max|g| (shared/golden/README.md).
void expect_close(const at::Tensor& candidate, const at::Tensor& reference, const std::string& what,
                  double atol = 1e-4, double rtol = 1e-4) {
  ASSERT_EQ(candidate.sizes(), reference.sizes()) << what;
  const at::Tensor c = candidate.to(at::kDouble), g = reference.to(at::kDouble);
  const double diff = (c - g).abs().max().item<double>();
  const double bound = atol + rtol * g.abs().max().item<double>();
  EXPECT_LE(diff, bound) << what << ": max abs diff " << diff;
}

// Every tensor of a checkpoint folder, for tests that rewrite one.
NamedTensors read_all(const std::string& folder) {
  NamedTensors out;
  for (auto& [name, t] : load_safetensors(folder + "/diffusion_pytorch_model.safetensors")) out.emplace_back(name, t);
  return out;
}

void write_folder(const std::string& dir, const std::string& config_from, const NamedTensors& tensors) {
  fs::create_directories(dir);
  fs::copy_file(config_from + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  write_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors);
}

void check_golden_vae(const std::string& name) {
  const Golden g(name);
  AutoencoderKL vae = load_autoencoder(g.weights);
  const Posterior post = vae->encode(g["in.image"]);
  expect_close(post.parameters, g["out.enc.parameters"], name + " out.enc.parameters");
  expect_close(post.mean, g["out.enc.mean"], name + " out.enc.mean");
  expect_close(post.logvar, g["out.enc.logvar"], name + " out.enc.logvar");
  expect_close(vae->decode(g["in.z"]), g["out.dec"], name + " out.dec");
  expect_close(vae->decode(post.mean), g["out.recon"], name + " out.recon");
}

TEST(VaeGolden, FluxAutoencoderKL) {
  check_golden_vae("flux_vae");
  AutoencoderKL vae = load_autoencoder(golden("flux_vae/weights"));
  EXPECT_EQ(vae->config().kind, VaeKind::kAutoencoderKL);
  EXPECT_FALSE(vae->quant_conv);
  EXPECT_DOUBLE_EQ(*vae->config().scaling_factor, 0.3611);
  EXPECT_DOUBLE_EQ(*vae->config().shift_factor, 0.1159);
}

TEST(VaeGolden, Flux2AutoencoderKLFlux2) {
  check_golden_vae("flux2_vae");
  AutoencoderKL vae = load_autoencoder(golden("flux2_vae/weights"));
  EXPECT_EQ(vae->config().kind, VaeKind::kFlux2);
  EXPECT_TRUE(vae->quant_conv && vae->post_quant_conv && vae->bn);
}

TEST(VaeGolden, Flux2PipelineLatents) {
  const Golden g("flux2_vae");
  AutoencoderKL vae = load_autoencoder(g.weights);
  const at::Tensor latents = flux2_encode_latents(*vae, g["in.image"]);
  expect_close(latents, g["pipe.image_latents"], "pipe.image_latents");
  expect_close(pack_tokens(latents), g["pipe.image_tokens"], "pipe.image_tokens");
  expect_close(flux2_decode_latents(*vae, g["pipe.image_latents"]), g["pipe.decoded"], "pipe.decoded");
  EXPECT_TRUE(torch::equal(unpack_tokens(g["pipe.image_tokens"], 4, 6), g["pipe.image_latents"]));
  expect_close(flux2_normalize(*vae, flux2_denormalize(*vae, latents)), latents, "normalize ∘ denormalize", 1e-6, 1e-6);
}

TEST(VaeLatents, PatchifyLayoutAndInverses) {
  const at::Tensor z = torch::arange(2 * 3 * 4 * 6, torch::kFloat).view({2, 3, 4, 6});
  const at::Tensor p = patchify_2x2(z);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 12, 2, 3}));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t dy = 0; dy < 2; ++dy)
      for (int64_t dx = 0; dx < 2; ++dx)
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < 3; ++j)
            EXPECT_EQ(p[1][c * 4 + dy * 2 + dx][i][j].item<float>(), z[1][c][2 * i + dy][2 * j + dx].item<float>());
  EXPECT_TRUE(torch::equal(unpatchify_2x2(p), z));
  const at::Tensor tokens = pack_tokens(p);
  ASSERT_EQ(tokens.sizes(), (std::vector<int64_t>{2, 6, 12}));
  EXPECT_EQ(tokens[0][1 * 3 + 2][5].item<float>(), p[0][5][1][2].item<float>());  // raster order h·w + w
  EXPECT_TRUE(torch::equal(unpack_tokens(tokens, 2, 3), p));
  EXPECT_NE(dt::testing::error_of([&] { patchify_2x2(torch::zeros({1, 3, 5, 4})); }), "(no error)");
}

// bf16 keeps 8 significant bits (relative step 2⁻⁸ ≈ 0.4%). Through ~20 convolutions and norms of
// the tiny goldens the measured error is ≤ 2.7% of max|g| at the worst element and ≤ 2% in RMS
// (an error in the layout or a broken kernel, e.g. 1.13's channels-last bf16 GroupNorm, gives 25%).
void expect_bf16_close(const at::Tensor& candidate, const at::Tensor& reference, const std::string& what) {
  expect_close(candidate, reference, what, 0, 0.05);
  const at::Tensor c = candidate.to(at::kDouble), g = reference.to(at::kDouble);
  const double rms = (c - g).pow(2).mean().sqrt().item<double>() / g.pow(2).mean().sqrt().item<double>();

  EXPECT_LE(rms, 0.03) << what << ": relative RMS error " << rms;
}

TEST(VaeGolden, Bfloat16WithinBound) {
  for (const std::string name : {"flux_vae", "flux2_vae"}) {
    const Golden g(name);
    LoadOptions o;
    o.compute_dtype = at::kBFloat16;
    AutoencoderKL vae = load_autoencoder(g.weights, o);
    ASSERT_EQ(vae->dtype(), at::kBFloat16);
    const Posterior post = vae->encode(g["in.image"]);
    ASSERT_EQ(post.mean.scalar_type(), at::kBFloat16);
    expect_bf16_close(post.mean, g["out.enc.mean"], name + " bf16 out.enc.mean");
    expect_bf16_close(post.logvar, g["out.enc.logvar"], name + " bf16 out.enc.logvar");
    expect_bf16_close(vae->decode(g["in.z"]), g["out.dec"], name + " bf16 out.dec");
    if (vae->bn) {
      EXPECT_EQ(vae->bn->running_var.scalar_type(), at::kFloat);  // statistics stay float32
      expect_bf16_close(flux2_encode_latents(*vae, g["in.image"]), g["pipe.image_latents"], "bf16 pipe.image_latents");
    }
  }
}

TEST(VaeLoad, PipelineFolderConfigWithoutClassAndAttentionBlocks) {
  // A pipeline folder's vae/ is found; blocked attention equals the one-block result.
  const std::string dir = dt::testing::temp_dir("vae_test_pipeline");
  fs::create_directories(dir + "/vae");
  fs::copy(golden("flux_vae/weights"), dir + "/vae");
  AutoencoderKL vae = load_autoencoder(dir);
  EXPECT_EQ(vae->config().latent_channels, 16);
  // A config.json without _class_name: the kind comes from the weights.
  fs::create_directories(dir + "/noclass");
  auto config = nlohmann::json::parse(std::ifstream(golden("flux2_vae/weights/config.json")));
  config.erase("_class_name");
  std::ofstream(dir + "/noclass/config.json") << config.dump();
  fs::copy_file(golden("flux2_vae/weights/diffusion_pytorch_model.safetensors"), dir + "/noclass/diffusion_pytorch_model.safetensors");
  EXPECT_EQ(load_autoencoder(dir + "/noclass")->config().kind, VaeKind::kFlux2);
  const at::Tensor q = torch::randn({2, 40, 8}), k = torch::randn({2, 40, 8}), v = torch::randn({2, 40, 8});
  expect_close(attention(q, k, v, 2 * 40 * 3), attention(q, k, v), "blocked attention", 1e-6, 1e-6);
  fs::remove_all(dir);
}

TEST(VaeLoad, RefusesMissingUnexpectedAndMisshapenTensors) {
  const std::string src = golden("flux2_vae/weights");
  const std::string dir = dt::testing::temp_dir("vae_test_bad");
  NamedTensors all = read_all(src);

  NamedTensors missing;
  for (auto& [n, t] : all)
    if (n != "decoder.up_blocks.1.resnets.2.conv1.bias") missing.emplace_back(n, t);
  write_folder(dir + "/missing", src, missing);
  std::string e = dt::testing::error_of([&] { load_autoencoder(dir + "/missing"); });
  EXPECT_NE(e.find("missing tensor 'decoder.up_blocks.1.resnets.2.conv1.bias'"), std::string::npos) << e;
  EXPECT_NE(e.find(dir + "/missing"), std::string::npos) << e;

  NamedTensors extra = all;
  extra.emplace_back("encoder.mid_block.attentions.1.to_q.weight", torch::zeros({32, 32}));
  write_folder(dir + "/extra", src, extra);
  e = dt::testing::error_of([&] { load_autoencoder(dir + "/extra"); });
  EXPECT_NE(e.find("unexpected tensor 'encoder.mid_block.attentions.1.to_q.weight'"), std::string::npos) << e;

  NamedTensors misshapen = all;
  for (auto& [n, t] : misshapen)
    if (n == "quant_conv.weight") t = torch::zeros({64, 64, 3, 3});
  write_folder(dir + "/shape", src, misshapen);
  e = dt::testing::error_of([&] { load_autoencoder(dir + "/shape"); });
  EXPECT_NE(e.find("'quant_conv.weight' has shape [64, 64, 3, 3], expected [64, 64, 1, 1]"), std::string::npos) << e;

  // The weights decide the kind: FLUX.2 weights under an AutoencoderKL config are refused.
  write_folder(dir + "/kind", golden("flux_vae/weights"), all);
  e = dt::testing::error_of([&] { load_autoencoder(dir + "/kind"); });
  EXPECT_NE(e.find("bn.running_mean"), std::string::npos) << e;

  e = dt::testing::error_of([&] { load_autoencoder(golden("flux_vae/io.safetensors")); });
  EXPECT_NE(e.find("not an autoencoder checkpoint"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(VaeLoad, RefusesBadInputShapes) {
  AutoencoderKL vae = load_autoencoder(golden("flux_vae/weights"));
  EXPECT_NE(dt::testing::error_of([&] { vae->encode(torch::zeros({1, 3, 30, 32})); }).find("multiples of 4"), std::string::npos);
  EXPECT_NE(dt::testing::error_of([&] { vae->encode(torch::zeros({1, 4, 32, 32})); }), "(no error)");
  EXPECT_NE(dt::testing::error_of([&] { vae->decode(torch::zeros({1, 32, 8, 8})); }), "(no error)");
}

// Single files without config.json, in diffusers names and in the original names under an
// all-in-one prefix, load to the same model as the folder. Uses 32 groups (what a single file
// implies) on a tiny three-level VAE.
TEST(VaeLoad, SingleFilesInDiffusersAndOriginalNames) {
  for (VaeKind kind : {VaeKind::kAutoencoderKL, VaeKind::kFlux2}) {
    const std::string dir = dt::testing::temp_dir("vae_test_single");
    VaeConfig c = tiny_vae_config(kind);
    c.block_out_channels = c.decoder_block_out_channels = {32, 64, 64};
    c.norm_num_groups = 32;
    write_random_vae(dir + "/folder", c, 5);
    const at::Tensor image = torch::rand({1, 3, 16, 24}) * 2 - 1;
    AutoencoderKL reference = load_autoencoder(dir + "/folder");
    const at::Tensor mean = reference->encode(image).mean;
    const at::Tensor decoded = reference->decode(mean);

    fs::copy_file(dir + "/folder/diffusion_pytorch_model.safetensors", dir + "/diffusers.safetensors");
    NamedTensors original;
    for (auto& [n, t] : read_all(dir + "/folder")) {
      const bool attention_matrix = n.find(".attentions.0.to_") != std::string::npos && t.dim() == 2;
      original.emplace_back("vae." + original_vae_name(n, c.levels()), attention_matrix ? t.view({t.size(0), t.size(1), 1, 1}) : t);
    }
    original.emplace_back("model.diffusion_model.img_in.weight", torch::zeros({4, 4}));
    write_safetensors(dir + "/original.safetensors", original);

    for (const char* file : {"/diffusers.safetensors", "/original.safetensors"}) {
      AutoencoderKL vae = load_autoencoder(dir + file);
      EXPECT_EQ(vae->config().kind, kind) << file;
      EXPECT_EQ(vae->config().block_out_channels, c.block_out_channels) << file;
      EXPECT_EQ(vae->config().use_quant_conv, c.use_quant_conv) << file;
      EXPECT_TRUE(torch::equal(vae->encode(image).mean, mean)) << file;
      EXPECT_TRUE(torch::equal(vae->decode(mean), decoded)) << file;
    }
    fs::remove_all(dir);
  }
}

TEST(VaeLoad, OriginalNames) {
  EXPECT_EQ(original_vae_name("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", 4), "encoder.down.1.block.0.nin_shortcut.weight");
  EXPECT_EQ(original_vae_name("encoder.down_blocks.2.downsamplers.0.conv.bias", 4), "encoder.down.2.downsample.conv.bias");
  EXPECT_EQ(original_vae_name("decoder.up_blocks.0.resnets.2.norm1.weight", 4), "decoder.up.3.block.2.norm1.weight");
  EXPECT_EQ(original_vae_name("decoder.up_blocks.2.upsamplers.0.conv.weight", 4), "decoder.up.1.upsample.conv.weight");
  EXPECT_EQ(original_vae_name("decoder.mid_block.resnets.1.conv2.weight", 4), "decoder.mid.block_2.conv2.weight");
  EXPECT_EQ(original_vae_name("encoder.mid_block.attentions.0.to_out.0.weight", 4), "encoder.mid.attn_1.proj_out.weight");
  EXPECT_EQ(original_vae_name("encoder.mid_block.attentions.0.group_norm.bias", 4), "encoder.mid.attn_1.norm.bias");
  EXPECT_EQ(original_vae_name("decoder.conv_norm_out.weight", 4), "decoder.norm_out.weight");
  EXPECT_EQ(original_vae_name("quant_conv.weight", 4), "encoder.quant_conv.weight");
  EXPECT_EQ(original_vae_name("post_quant_conv.bias", 4), "decoder.post_quant_conv.bias");
  EXPECT_EQ(original_vae_name("bn.running_var", 4), "bn.running_var");
  EXPECT_EQ(original_vae_name("encoder.conv_in.weight", 4), "encoder.conv_in.weight");
}

TEST(VaeRandom, WritesLoadableDeterministicCheckpoints) {
  for (VaeKind kind : {VaeKind::kAutoencoderKL, VaeKind::kFlux2}) {
    const std::string dir = dt::testing::temp_dir("vae_test_random");
    const VaeConfig c = tiny_vae_config(kind);
    write_random_vae(dir + "/a", c, 3);
    write_random_vae(dir + "/b", c, 3);
    write_random_vae(dir + "/c", c, 4);
    auto bytes = [&](const std::string& d) {
      std::ifstream f(d + "/diffusion_pytorch_model.safetensors", std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(f), {});
    };
    EXPECT_EQ(bytes(dir + "/a"), bytes(dir + "/b"));
    EXPECT_NE(bytes(dir + "/a"), bytes(dir + "/c"));

    AutoencoderKL vae = load_autoencoder(dir + "/a");
    EXPECT_EQ(vae->config().to_json(), c.to_json());
    // The real key set: the golden of the same kind has exactly these names.
    const auto golden_names = read_all(golden(kind == VaeKind::kFlux2 ? "flux2_vae/weights" : "flux_vae/weights"));
    const auto names = read_all(dir + "/a");
    ASSERT_EQ(names.size(), golden_names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      EXPECT_EQ(names[i].first, golden_names[i].first);
      EXPECT_EQ(names[i].second.sizes(), golden_names[i].second.sizes()) << names[i].first;
    }
    const at::Tensor image = torch::rand({1, 3, 16, 16}) * 2 - 1;
    const Posterior post = vae->encode(image);
    EXPECT_EQ(post.mean.sizes(), (std::vector<int64_t>{1, c.latent_channels, 4, 4}));
    const double spread = post.mean.std().item<double>();
    EXPECT_GT(spread, 0.05);  // random weights that keep activations O(1)
    EXPECT_LT(spread, 20);
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace dt::vae
