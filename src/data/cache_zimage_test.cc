// The caches with the real Z-Image VAE and Qwen3 text encoder (tiny random weights, a small real
// BPE tokenizer): entries hold exactly what the family computes from the prepared images and the
// captions, and a second fill loads no model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/cache.h"
#include "models/zimage/family.h"
#include "testing/images.h"
#include "testing/tiny_models.h"
#include "text/qwen3.h"
#include "text/tiny_tokenizer.h"
#include "vae/random_vae.h"

namespace dt {
namespace {

using testing::write;

TEST(CacheZImage, EntriesAreTheFamilysLatentsAndFeatures) {
  testing::ScratchDir dir("cache_zimage");
  write_tiny_tokenizer(dir / "pipe/tokenizer", 300);
  write_random_qwen3(dir / "pipe/text_encoder", testing::small_qwen3(300, 2), 3);
  vae::write_random_vae(dir / "pipe/vae", vae::tiny_vae_config(VaeKind::kAutoencoderKL), 4);

  write(dir / "images/wide.png", encode_png(testing::quadrants(96, 48)));
  write(dir / "images/wide.txt", "a wide picture\nfour colours");
  write(dir / "images/square.jpg", testing::encode_jpeg(testing::quadrants(40, 40), 90, 6));
  write(dir / "images/square.txt", "a square");
  DataConfig config;
  config.cache_dir = "cache";
  config.resolutions = {32};
  ConceptConfig concept_config;
  concept_config.path = "images";
  config.concepts.push_back(concept_config);

  const Family& family = zimage_family();
  const Manifest manifest = scan_dataset(config, dir.str(), family.pixel_multiple());
  CacheModels models{&family, dir / "pipe", dir / "pipe", LoadOptions{}};
  FillStats first, second;
  const CacheIdentities ids = fill_cache(manifest, config, dir.str(), models, false, &first);
  EXPECT_EQ(first.latents_computed, 2);
  EXPECT_EQ(first.texts_computed, 4);  // three captions and the empty one
  fill_cache(manifest, config, dir.str(), models, false, &second);
  EXPECT_EQ(second.latents_reused, 2);
  EXPECT_EQ(second.texts_reused, 4);
  EXPECT_EQ(second.latents_computed + second.texts_computed, 0);

  const DataCache cache(config, dir.str(), ids);
  auto vae = family.load_vae(dir / "pipe", LoadOptions{});
  auto encoder = family.load_text_encoder(dir / "pipe", LoadOptions{});
  torch::NoGradGuard no_grad;
  for (const Sample& s : manifest.samples) {
    const at::Tensor x0 = cache.latent(s);
    // 16 channels; the tiny VAE downsamples 4× (three levels), the real one 8×.
    EXPECT_EQ(x0.sizes(), (at::IntArrayRef{16, s.bucket.height / 4, s.bucket.width / 4})) << s.key;
    const at::Tensor image = image_to_tensor(load_training_image(s, parse_color(config.background)));
    EXPECT_TRUE(torch::equal(x0, vae->encode(image.unsqueeze(0))[0])) << s.key;
    for (const std::string& caption : s.captions)
      EXPECT_TRUE(torch::equal(cache.text(caption), encoder->encode({caption})[0])) << caption;
  }
  EXPECT_TRUE(torch::equal(cache.text(""), encoder->encode({""})[0]));
}

}  // namespace
}  // namespace dt
