#include "data/cache.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/fake_models.h"
#include "testing/images.h"

namespace dt {
namespace {

using testing::ScratchDir;
using testing::write;

using testing::FakeFamily;
using testing::text_loads;
using testing::vae_loads;

struct Fixture {
  ScratchDir dir{"cache"};
  DataConfig config;
  FakeFamily family;
  CacheModels models;
  Fixture() {
    write(dir / "data/a.png", encode_png(testing::quadrants(64, 32)));
    write(dir / "data/a.txt", "first\nsecond");
    write(dir / "data/b.png", encode_png(testing::quadrants(48, 48)));
    write(dir / "data/b.txt", "third");
    write(dir / "vae.bin", "vae-1");
    write(dir / "te.bin", "te-1");
    config.cache_dir = "cache";
    config.resolutions = {32};
    ConceptConfig c;
    c.path = "data";
    config.concepts.push_back(c);
    models.family = &family;
    models.vae_path = dir / "vae.bin";
    models.text_encoder_path = dir / "te.bin";
  }
  Manifest scan() { return scan_dataset(config, dir.str(), 16); }
  FillStats fill(const Manifest& m, CacheIdentities* ids = nullptr) {
    FillStats s;
    CacheIdentities got = fill_cache(m, config, dir.str(), models, false, &s);
    if (ids) *ids = got;
    return s;
  }
};

void expect_stats(const FillStats& s, int64_t latents_computed, int64_t latents_reused, int64_t texts_computed,
                  int64_t texts_reused) {
  EXPECT_EQ(s.latents_computed, latents_computed);
  EXPECT_EQ(s.latents_reused, latents_reused);
  EXPECT_EQ(s.texts_computed, texts_computed);
  EXPECT_EQ(s.texts_reused, texts_reused);
}

TEST(Cache, FillsOnceThenReusesWithoutLoadingModels) {
  Fixture f;
  const Manifest m = f.scan();
  vae_loads = text_loads = 0;
  CacheIdentities ids;
  expect_stats(f.fill(m, &ids), 2, 0, 4, 0);  // captions first, second, third and ""
  EXPECT_EQ(vae_loads, 1);
  EXPECT_EQ(text_loads, 1);
  EXPECT_EQ(ids.vae, "vae-1|Float");

  expect_stats(f.fill(m), 0, 2, 0, 4);
  EXPECT_EQ(vae_loads, 1);  // identities known from the unchanged model files: nothing loaded
  EXPECT_EQ(text_loads, 1);

  // What training reads is what the models computed from the prepared image.
  const DataCache cache(f.config, f.dir.str(), ids);
  const Sample& a = m.samples[0];
  const at::Tensor expected = torch::avg_pool2d(image_to_tensor(load_training_image(a, parse_color("#ffffff"))), 8);
  EXPECT_TRUE(torch::equal(cache.latent(a), expected));
  EXPECT_EQ(cache.latent(a).sizes(), (at::IntArrayRef{3, a.bucket.height / 8, a.bucket.width / 8}));
  EXPECT_EQ(cache.text("second").size(0), 7);
  EXPECT_EQ(cache.text("").size(0), 1);
  EXPECT_THROW(cache.text("never cached"), Error);
}

TEST(Cache, ImageBytesCaptionOrModelChangesRecomputeOnlyTheirEntries) {
  Fixture f;
  f.fill(f.scan());
  // Rewriting identical bytes changes nothing; new bytes (same name, same size) recompute that latent.
  write(f.dir / "data/b.png", encode_png(testing::quadrants(48, 48)));
  expect_stats(f.fill(f.scan()), 0, 2, 0, 4);
  Image changed = testing::quadrants(48, 48);
  changed.pixels[0] = 17;
  write(f.dir / "data/b.png", encode_png(changed));
  expect_stats(f.fill(f.scan()), 1, 1, 0, 4);
  // A caption edit: one new text entry.
  write(f.dir / "data/b.txt", "third, edited");
  expect_stats(f.fill(f.scan()), 0, 2, 1, 3);
  // A different VAE: every latent, no text.
  vae_loads = text_loads = 0;
  write(f.dir / "vae.bin", "vae-2");
  CacheIdentities ids;
  expect_stats(f.fill(f.scan(), &ids), 2, 0, 0, 4);
  EXPECT_EQ(ids.vae, "vae-2|Float");
  EXPECT_EQ(text_loads, 0);
  // A different text encoder: every text, no latent.
  write(f.dir / "te.bin", "te-2");
  expect_stats(f.fill(f.scan()), 0, 2, 4, 0);
  // A model file touched but identical in content: loaded once to learn that nothing changed.
  vae_loads = 0;
  write(f.dir / "vae.bin", "vae-2");
  std::filesystem::last_write_time(f.dir / "vae.bin", std::filesystem::file_time_type::clock::now() +
                                                          std::chrono::seconds(5));
  expect_stats(f.fill(f.scan()), 0, 2, 0, 4);
  EXPECT_EQ(vae_loads, 1);
}

TEST(Cache, CorruptEntriesAreRecomputedWithAWarning) {
  Fixture f;
  const Manifest m = f.scan();
  CacheIdentities ids;
  f.fill(m, &ids);
  std::vector<std::string> entries;
  for (const auto& e : std::filesystem::recursive_directory_iterator(f.dir / "cache/latents"))
    if (e.is_regular_file()) entries.push_back(e.path().string());
  ASSERT_EQ(entries.size(), 2u);
  const std::string bytes = read_file(entries[0]);
  write(entries[0], bytes.substr(0, bytes.size() - 5));  // truncated
  std::string flipped = read_file(entries[1]);
  flipped[flipped.size() - 3] ^= 1;  // one bit of the tensor data
  write(entries[1], flipped);
  const DataCache cache(f.config, f.dir.str(), ids);
  EXPECT_THROW(cache.latent(m.samples[0]), Error);
  EXPECT_THROW(cache.latent(m.samples[1]), Error);

  ::testing::internal::CaptureStderr();
  expect_stats(f.fill(m), 2, 0, 0, 4);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("corrupt cache entry"), std::string::npos) << err;
  EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << err;
  EXPECT_NO_THROW(cache.latent(m.samples[0]));
  EXPECT_NO_THROW(cache.latent(m.samples[1]));
}

TEST(Cache, ImageChangedAfterScanIsAnError) {
  Fixture f;
  const Manifest m = f.scan();
  write(f.dir / "data/a.png", encode_png(testing::quadrants(64, 16)));
  try {
    f.fill(m);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), f.dir / "data/a.png" + ": changed since the dataset was scanned; scan again");
  }
}

}  // namespace
}  // namespace dt
