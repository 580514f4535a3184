#include "data/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "testing/images.h"

namespace dt {
namespace {

using testing::ScratchDir;
using testing::write;

TEST(Buckets, SizesAreMultiplesNearTheTargetArea) {
  const auto b = make_buckets(1024, {1.0, 2.0}, 16);
  // 1024·√2 = 1448.2 → 1456, 1024/√2 = 724.1 → 720.
  ASSERT_EQ(b, (std::vector<Bucket>{{720, 1456, 1024}, {1024, 1024, 1024}, {1456, 720, 1024}}));
  EXPECT_EQ(nearest_bucket(b, 3000, 1500), (Bucket{1456, 720, 1024}));
  EXPECT_EQ(nearest_bucket(b, 1000, 1000), (Bucket{1024, 1024, 1024}));
  EXPECT_EQ(nearest_bucket(b, 1200, 1000), (Bucket{1024, 1024, 1024}));
  EXPECT_EQ(nearest_bucket(b, 500, 1600), (Bucket{720, 1456, 1024}));
  for (const Bucket& k : make_buckets(512, {1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4}, 16)) {
    EXPECT_EQ(k.width % 16, 0);
    EXPECT_EQ(k.height % 16, 0);
    EXPECT_NEAR(double(k.width * k.height) / (512.0 * 512.0), 1.0, 0.06);
  }
  EXPECT_THROW(make_buckets(1024, {0.5}, 16), Error);
}

TEST(Buckets, CropCoversTheBucketDeterministically) {
  const Bucket b{1456, 720, 1024};
  const Crop center = choose_crop(3000, 1500, b, false, 0, "k");
  // Scale max(1456/3000, 720/1500) = 0.48533 → 1456 × 728, centered 4 pixels down.
  EXPECT_EQ(center, (Crop{1456, 728, 0, 4, 1456, 720}));
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int i = 0; i < 20; ++i) {
    const std::string key = "c/" + std::to_string(i) + ".png";
    const Crop r = choose_crop(1000, 3000, Bucket{512, 512, 512}, true, 7, key);
    EXPECT_EQ(r, choose_crop(1000, 3000, Bucket{512, 512, 512}, true, 7, key));  // same inputs, same crop
    EXPECT_EQ(r.resized_width, 512);
    EXPECT_EQ(r.resized_height, 1536);
    EXPECT_EQ(r.x, 0);
    EXPECT_LE(r.y + r.height, r.resized_height);
    offsets.insert({r.x, r.y});
  }
  EXPECT_GT(offsets.size(), 15u);  // different keys, different crops
  // The seed is part of the draw.
  int differ = 0;
  for (int i = 0; i < 10; ++i)
    differ += choose_crop(1000, 3000, Bucket{512, 512, 512}, true, 7, std::to_string(i)).y !=
              choose_crop(1000, 3000, Bucket{512, 512, 512}, true, 8, std::to_string(i)).y;
  EXPECT_GT(differ, 5);
}

std::string png_of(int64_t w, int64_t h) { return encode_png(testing::quadrants(w, h)); }

DataConfig config_for(const ScratchDir& dir) {
  DataConfig c;
  c.cache_dir = dir / "cache";
  c.resolutions = {64};
  c.aspect_ratios = {1.0, 2.0};
  ConceptConfig k;
  k.path = dir / "people";
  c.concepts.push_back(k);
  return c;
}

TEST(Dataset, ScanBuildsASortedManifestWithCaptionsAndBuckets) {
  ScratchDir dir("scan");
  write(dir / "people/b.png", png_of(128, 64));
  write(dir / "people/b.txt", "first caption\n\n  second caption  \r\n");
  write(dir / "people/a.jpg", testing::encode_jpeg(testing::quadrants(40, 40)));
  write(dir / "people/a.txt", "only one");
  write(dir / "people/sub/c.png", png_of(30, 90));
  write(dir / "people/sub/c.txt", "deep");
  write(dir / "people/notes.md", "ignored");
  DataConfig config = config_for(dir);
  config.concepts[0].repeats = 2.5;
  config.concepts[0].loss_weight = 0.5;
  const Manifest m = scan_dataset(config, "", 16);
  ASSERT_EQ(m.samples.size(), 3u);
  EXPECT_EQ(m.samples[0].key, "people/a.jpg");
  EXPECT_EQ(m.samples[1].key, "people/b.png");
  EXPECT_EQ(m.samples[2].key, "people/sub/c.png");
  EXPECT_EQ(m.samples[1].captions, (std::vector<std::string>{"first caption", "second caption"}));
  EXPECT_EQ(m.samples[0].captions, (std::vector<std::string>{"only one"}));
  EXPECT_EQ(m.samples[1].bucket, (Bucket{96, 48, 64}));  // 64·√2 = 90.5 → 96, 45.3 → 48
  EXPECT_EQ(m.samples[2].bucket, (Bucket{48, 96, 64}));
  EXPECT_EQ(m.samples[0].bucket, (Bucket{64, 64, 64}));
  EXPECT_EQ(m.samples[0].crop, (Crop{64, 64, 0, 0, 64, 64}));
  ASSERT_EQ(m.concepts.size(), 1u);
  EXPECT_EQ(m.concepts[0].name, "people");
  EXPECT_EQ(m.concepts[0].repeats, 2.5);
  EXPECT_EQ(m.concept_of(m.samples[0]).loss_weight, 0.5);
  EXPECT_EQ(m.find("people/b.png"), &m.samples[1]);
  EXPECT_EQ(m.find("people/zzz.png"), nullptr);
  EXPECT_TRUE(std::filesystem::exists(dir / "cache/images.json"));

  // A rescan (now from the remembered sizes) gives the same manifest; a caption edit changes it.
  EXPECT_EQ(scan_dataset(config, "", 16).hash, m.hash);
  write(dir / "people/a.txt", "edited");
  EXPECT_NE(scan_dataset(config, "", 16).hash, m.hash);

  // Fractional repeats: 2 each, plus one more for half of the three (rounded: 2 of them).
  const auto epoch = epoch_samples(m, 1, 0);
  EXPECT_EQ(epoch.size(), 3u * 2 + 2);
  EXPECT_EQ(epoch, epoch_samples(m, 1, 0));

  // Several resolutions: one entry per image and resolution, keys tagged.
  config.resolutions = {64, 128};
  const Manifest multi = scan_dataset(config, "", 16);
  ASSERT_EQ(multi.samples.size(), 6u);
  EXPECT_EQ(multi.samples[0].key, "people/a.jpg@128");
  EXPECT_EQ(multi.samples[0].bucket, (Bucket{128, 128, 128}));
}

TEST(Dataset, CaptionSourcesAndMissingCaptionPolicy) {
  ScratchDir dir("captions");
  write(dir / "people/dog on grass.png", png_of(16, 16));
  write(dir / "lines.txt", "one\ntwo\n");
  DataConfig config = config_for(dir);
  try {
    scan_dataset(config, "", 16);
    FAIL() << "missing caption accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "people/dog on grass.png" + ": missing caption file dog on grass.txt"),
              std::string::npos)
        << e.what();
  }
  config.missing_caption = "empty";
  Manifest m = scan_dataset(config, "", 16);
  EXPECT_EQ(m.samples[0].captions, (std::vector<std::string>{""}));
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find("no caption file"), std::string::npos);

  config.concepts[0].caption_source = "filename";
  EXPECT_EQ(scan_dataset(config, "", 16).samples[0].captions, (std::vector<std::string>{"dog on grass"}));
  config.concepts[0].caption_source = "file";
  config.concepts[0].caption = "lines.txt";  // relative to the base folder
  EXPECT_EQ(scan_dataset(config, dir.str(), 16).samples[0].captions, (std::vector<std::string>{"one", "two"}));
}

// Every kind of bad file at once: one error listing each, or all skipped.
TEST(Dataset, BadFilesAreListedTogetherOrSkipped) {
  ScratchDir dir("bad");
  const std::string good = png_of(32, 32);
  Image noise = testing::quadrants(128, 128);
  uint32_t state = 3;
  for (auto& v : noise.pixels) v = uint8_t((state = state * 1664525u + 1013904223u) >> 24);
  const std::string jpeg = testing::encode_jpeg(noise);
  write(dir / "people/good.png", good);
  write(dir / "people/truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  write(dir / "people/truncated.png", good.substr(0, good.size() - 30));
  write(dir / "people/garbage.jpg", "this is not an image at all");
  write(dir / "people/empty.png", "");
  write(dir / "people/zero.png", testing::png_with_size(good, 0, 32));
  write(dir / "people/anim.gif", "GIF89a");
  write(dir / "people/nocaption.png", good);
  for (const char* name : {"good", "truncated", "garbage", "empty", "zero", "anim"})
    write(dir / (std::string("people/") + name + ".txt"), "caption");
  write(dir / "not_a_folder", "x");
  DataConfig config = config_for(dir);
  ConceptConfig missing;
  missing.path = dir / "nowhere";
  ConceptConfig file;
  file.path = dir / "not_a_folder";
  config.concepts.push_back(missing);
  config.concepts.push_back(file);

  const std::vector<std::pair<std::string, std::string>> expected = {
      {"people/anim.gif", "unsupported image format (use JPEG, PNG or WebP)"},
      {"people/empty.png", "file is empty"},
      {"people/garbage.jpg", "not an image (unknown format; use JPEG, PNG or WebP)"},
      {"people/nocaption.png", "missing caption file nocaption.txt"},
      {"people/truncated.jpg", "corrupt or truncated JPEG"},
      {"people/truncated.png", "corrupt PNG: file is truncated"},
      {"people/zero.png", "corrupt PNG"},
      {"nowhere", "folder does not exist"},
      {"not_a_folder", "not a folder"},
  };
  std::string message;
  try {
    scan_dataset(config, "", 16);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_EQ(message.rfind("9 bad files in the dataset", 0), 0u) << message;
  for (const auto& [file, problem] : expected)
    EXPECT_NE(message.find("\n  " + dir / file + ": " + problem), std::string::npos) << file << "\n" << message;

  config.bad_files = "skip";
  const Manifest m = scan_dataset(config, "", 16);
  ASSERT_EQ(m.samples.size(), 1u);
  EXPECT_EQ(m.samples[0].key, "people/good.png");
  EXPECT_EQ(m.skipped.size(), expected.size());
}

TEST(Dataset, OneTrainerConceptsJson) {
  ScratchDir dir("onetrainer");
  write(dir / "cats/a.png", png_of(16, 16));
  write(dir / "cats/a.txt", "a cat");
  write(dir / "cats/deeper/b.png", png_of(16, 16));
  write(dir / "dogs/d.png", png_of(16, 16));
  write(dir / "dogs/prompts.txt", "a dog\nanother dog\n");
  // The shape OneTrainer's UI saves (training_concepts/concepts.json), trimmed to the fields read.
  write(dir / "concepts.json", R"([
  {"__version": 1, "name": "cats", "path": "cats", "enabled": true, "include_subdirectories": false,
   "balancing": 3.0, "balancing_strategy": "REPEATS", "loss_weight": 0.75, "validation_concept": false,
   "image": {"enable_crop_jitter": true, "enable_random_flip": true, "enable_fixed_flip": false},
   "text": {"prompt_source": "sample", "prompt_path": "", "enable_tag_shuffling": false}},
  {"__version": 1, "name": "dogs", "path": "dogs", "include_subdirectories": true,
   "balancing": 10, "balancing_strategy": "SAMPLES",
   "text": {"prompt_source": "concept", "prompt_path": "dogs/prompts.txt", "enable_tag_shuffling": true}},
  {"name": "held out", "path": "cats", "validation_concept": true},
  {"name": "old", "path": "dogs", "enabled": false, "repeats": 2}
])");
  std::vector<std::string> warnings;
  const auto concepts = read_onetrainer_concepts(dir / "concepts.json", warnings);
  ASSERT_EQ(concepts.size(), 3u);
  EXPECT_EQ(concepts[0].name, "cats");
  EXPECT_EQ(concepts[0].path, dir / "cats");
  EXPECT_FALSE(concepts[0].include_subfolders);
  EXPECT_EQ(concepts[0].repeats, 3.0);
  EXPECT_EQ(concepts[0].loss_weight, 0.75);
  EXPECT_EQ(concepts[0].caption_source, "txt");
  EXPECT_EQ(concepts[1].samples_per_epoch, 10);
  EXPECT_EQ(concepts[1].caption_source, "file");
  EXPECT_EQ(concepts[1].caption, dir / "dogs/prompts.txt");
  EXPECT_TRUE(concepts[1].include_subfolders);
  EXPECT_FALSE(concepts[2].enabled);
  EXPECT_EQ(concepts[2].repeats, 2.0);  // version-0 files call balancing "repeats"
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("image.enable_crop_jitter, image.enable_random_flip"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("text.enable_tag_shuffling"), std::string::npos);
  EXPECT_NE(warnings[2].find("validation concept"), std::string::npos);

  DataConfig config;
  config.cache_dir = dir / "cache";
  config.resolutions = {64};
  config.concepts_json = "concepts.json";
  const Manifest m = scan_dataset(config, dir.str(), 16);
  ASSERT_EQ(m.samples.size(), 2u);  // cats/deeper is not included; "old" is disabled
  EXPECT_EQ(m.samples[0].key, "cats/a.png");
  EXPECT_EQ(m.samples[1].key, "dogs/d.png");
  EXPECT_EQ(m.samples[1].captions, (std::vector<std::string>{"a dog", "another dog"}));
  EXPECT_EQ(m.concepts[1].repeats, 10.0);  // 10 samples per epoch from one image

  write(dir / "broken.json", "{\"name\": 1}");
  EXPECT_THROW(read_onetrainer_concepts(dir / "broken.json", warnings), Error);
}

}  // namespace
}  // namespace dt
