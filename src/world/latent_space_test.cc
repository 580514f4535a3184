#include "world/latent_space.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "io/atomic_file.h"
#include "models/family.h"
#include "models/flux2/conditioning.h"
#include "testing/support.h"
#include "vae/load.h"

namespace dt::world {
namespace {

const std::string kShapes = std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml";

// The shipped world with a VAE small and short enough for a test (seconds on two cores).
World tiny_world(const std::vector<std::string>& more = {}) {
  std::vector<std::string> settings = {"supersample=1",          "vae.block_out_channels=[8, 8, 8, 8]",
                                       "vae.norm_num_groups=4",  "vae.layers_per_block=1",
                                       "vae.steps=30",           "vae.warmup_steps=5",
                                       "vae.batch_size=4",       "vae.images=20",
                                       "vae.held_out=5",         "vae.learning_rate=3e-3"};
  settings.insert(settings.end(), more.begin(), more.end());
  return load_world(kShapes, settings);
}

// [N, 3, size, size] in [-1, 1]: the training images.
at::Tensor training_images(const World& w) {
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < w.config().vae.images; ++i) images.push_back(image_to_tensor(w.render(latent_scene(w, i))));
  return at::stack(images);
}

// Normalized latents [N, C, h, w] → the per-channel mean and std over images and positions.
std::pair<at::Tensor, at::Tensor> channel_moments(const at::Tensor& latents) {
  return {latents.mean({0, 2, 3}), latents.var({0, 2, 3}, /*unbiased=*/false).sqrt()};
}

TEST(WorldLatentSpace, SameConfigWritesTheSameBytes) {
  testing::ScratchDir dir("latent_same");
  const World w = tiny_world({"vae.steps=6"});
  train_latent_space(w, dir / "a");
  train_latent_space(w, dir / "b");
  for (const char* file : {"config.json", "diffusion_pytorch_model.safetensors"})
    EXPECT_EQ(read_file(dir / ("a/" + std::string(file))), read_file(dir / ("b/" + std::string(file)))) << file;
  // The seed reaches the weights.
  train_latent_space(tiny_world({"vae.steps=6", "vae.seed=1"}), dir / "c");
  EXPECT_NE(read_file(dir / "a/diffusion_pytorch_model.safetensors"), read_file(dir / "c/diffusion_pytorch_model.safetensors"));
}

// The folder is a Z-Image VAE: it loads unchanged, and the family's normalized latents of the
// training images have mean 0 and std 1 per channel (the reparametrization is exact).
TEST(WorldLatentSpace, ZImageLoadsItAndItsLatentsAreNormalized) {
  testing::ScratchDir dir("latent_zimage");
  const World w = tiny_world();
  const LatentSpaceReport report = train_latent_space(w, dir.str());
  EXPECT_LT(report.last_loss, 0.5 * report.first_loss) << "first " << report.first_loss << ", last " << report.last_loss;
  const auto json = nlohmann::json::parse(read_file(dir / "latent_space.json"));
  EXPECT_EQ(json["steps"], 30);
  EXPECT_EQ(json["accuracy"].size(), 7u);
  EXPECT_GT(json["psnr_db"].get<double>(), 5.0);

  const vae::AutoencoderKL vae = vae::load_autoencoder(dir.str());
  EXPECT_EQ(vae->config().latent_channels, 16);
  EXPECT_EQ(vae->config().spatial_factor(), 8);
  EXPECT_DOUBLE_EQ(*vae->config().scaling_factor, 0.3611);
  EXPECT_DOUBLE_EQ(*vae->config().shift_factor, 0.1159);
  const auto family_vae = family_by_name("zimage").load_vae(dir.str(), {});
  const auto [mean, std] = channel_moments(family_vae->encode(training_images(w)));
  EXPECT_LT(mean.abs().max().item<double>(), 1e-4) << mean;
  EXPECT_LT((std - 1).abs().max().item<double>(), 1e-4) << std;
}

// FLUX.2's VAE: its BatchNorm statistics are those of the patchified training latents, so the
// family's normalized latents have mean 0 and std 1 per channel (std within BatchNorm's eps).
TEST(WorldLatentSpace, Flux2LoadsItAndItsLatentsAreNormalized) {
  testing::ScratchDir dir("latent_flux2");
  const World w = tiny_world({"vae.class=\"AutoencoderKLFlux2\"", "vae.latent_channels=32", "vae.steps=10"});
  train_latent_space(w, dir.str());
  const auto family_vae = family_by_name("flux2-klein").load_vae(dir.str(), {});
  const auto [mean, std] = channel_moments(family_vae->encode(training_images(w)));
  EXPECT_EQ(mean.size(0), 128);
  EXPECT_LT(mean.abs().max().item<double>(), 1e-4) << mean;
  EXPECT_LT((std - 1).abs().max().item<double>(), 1e-2) << std;
}

TEST(WorldLatentSpace, BadVaeSettingsAreOneLineErrorsNamingTheWorldFile) {
  auto with = [](const std::string& setting) { return testing::error_of([&] { load_world(kShapes, {setting}); }); };
  EXPECT_EQ(with("vae.seed=3"), "(no error)");
  EXPECT_EQ(with("vae.block_out_channels=[16, 32, 32]"),
            kShapes + ": vae.block_out_channels has 3 levels; the families need 4 (8 pixels per latent side)");
  EXPECT_EQ(with("vae.block_out_channels=[16, 32, 30, 32]"),
            kShapes + ": invalid VAE config: block channels 30 not a positive multiple of norm_num_groups 8");
  EXPECT_EQ(with("vae.class=\"AutoencoderTiny\""), kShapes + ": vae.class 'AutoencoderTiny' is not AutoencoderKL or AutoencoderKLFlux2");
  EXPECT_EQ(testing::error_of([&] { load_world(kShapes, {"size=72", "vae.class=\"AutoencoderKLFlux2\""}); }),
            kShapes + ": vae.class AutoencoderKLFlux2 needs an image size that is a multiple of 16, the world's is 72");
  EXPECT_EQ(with("vae.warmup_steps=5000"), kShapes + ": vae.warmup_steps must be 0 to steps - 1");
  EXPECT_EQ(with("vae.kl_weight=-1"), kShapes + ": vae.learning_rate must be positive and kl_weight not negative");
  EXPECT_EQ(with("vae.batch_size=0"), kShapes + ": vae.steps, batch_size, images and held_out must each be at least 1");
}

}  // namespace
}  // namespace dt::world
