#include "world/world.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/support.h"
#include "world/score.h"

namespace dt::world {
namespace {

const std::string kShapes = std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml";

// Renderings are anti-aliased: a disc's edge pixels take in-between values, its centre the fill.
TEST(World, RendersAntiAliasedShapesAndCaptions) {
  const World w = load_world(kShapes);
  Scene s;  // a small red circle in the top left on white, no jitter
  const Image image = w.render(s);
  ASSERT_EQ(image.width, 64);
  const int64_t cx = static_cast<int64_t>(0.33 * 64), cy = cx;
  EXPECT_EQ(image.at(cx, cy)[0], 0xd6);
  EXPECT_EQ(image.at(60, 60)[1], 0xf5);
  int between = 0;  // pixels neither background nor fill
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 64; ++x) between += image.at(x, y)[1] != 0xf5 && image.at(x, y)[1] != 0x28;
  EXPECT_GT(between, 20);
  EXPECT_EQ(w.caption(s), "a small red circle in the top left on a white background");
  const Scene framed = w.concept_scene(3, 7);
  EXPECT_EQ(w.caption(framed).rfind("framix style, a ", 0), 0u) << w.caption(framed);
  EXPECT_EQ(w.render(framed).at(0, 0)[0], 0xff);
  const Scene star = w.concept_scene(1, 7);
  EXPECT_NE(w.caption(star).find(" zorbit "), std::string::npos) << w.caption(star);
  // The same seed, the same scene and pixels.
  EXPECT_EQ(w.render(w.base_scene(42)).pixels, w.render(w.base_scene(42)).pixels);
  EXPECT_NE(w.render(w.base_scene(42)).pixels, w.render(w.base_scene(43)).pixels);
}

// The scorer reads back every attribute of clean renderings of the Base's world and of every
// concept, jitter included: at least 99% per attribute (measured here: printed).
TEST(World, ScorerReadsBackCleanRenderings) {
  const World w = load_world(kShapes);
  std::map<std::string, int> wrong;
  int total = 0;
  double worst_invalid = 0;
  auto check = [&](const Scene& truth) {
    const Image image = w.render(truth);
    const Scene got = read_scene(w, image);
    ++total;
    for (const auto& [attribute, right] : compare_attributes(truth, got)) wrong[attribute] += !right;
    if (total % 10 == 0) worst_invalid = std::max(worst_invalid, invalid_fraction(w, image));
  };
  for (uint64_t seed = 0; seed < 400; ++seed) check(w.base_scene(seed));
  for (int k = 0; k < static_cast<int>(w.concepts().size()); ++k)
    for (uint64_t seed = 1000; seed < 1100; ++seed) check(w.concept_scene(k, seed));
  for (const auto& [attribute, n] : wrong) {
    std::printf("%-10s read back on %.2f%% of %d clean renderings\n", attribute.c_str(), 100.0 * (total - n) / total, total);
    EXPECT_LE(n, total / 100) << attribute;
  }
  std::printf("largest fraction of pixels off the fitted rendering: %.4f\n", worst_invalid);
  EXPECT_LT(worst_invalid, 0.02);
}

// Noise makes an image invalid; the scorer's reading of a noisy image still finds its parts.
TEST(World, InvalidFractionRisesWithNoise) {
  const World w = load_world(kShapes);
  Image image = w.render(w.base_scene(5));
  EXPECT_LT(invalid_fraction(w, image), 0.01);
  uint32_t state = 1;
  for (auto& p : image.pixels) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<uint8_t>(std::clamp(int(p) + int(state >> 24) - 128, 0, 255));
  }
  EXPECT_GT(invalid_fraction(w, image), 0.3);
}

TEST(World, BadConfigsAreErrorsNamingTheFile) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("dt_world_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/w.toml";
  write_file_atomic(path, read_file(kShapes));
  EXPECT_EQ(dt::testing::error_of([&] { load_world(path); }), "(no error)");
  auto with = [&](const std::string& setting) { return dt::testing::error_of([&] { load_world(path, {setting}); }); };
  EXPECT_NE(with("size=8").find(path + ": size must be"), std::string::npos);
  EXPECT_NE(with("backgrounds=[{name = \"pink\", rgb = \"#d03030\"}]").find("colour red is too close to background pink"),
            std::string::npos);
  EXPECT_NE(with("shapes=[{name = \"big\", points = [0.0, -2.0, 1.0, 0.0, 0.0, 1.0]}]").find("outside the unit circle"),
            std::string::npos);
  EXPECT_NE(with("sizes=[{name = \"huge\", radius = 0.45}]").find("would leave the image"), std::string::npos);
  EXPECT_NE(with("concepts=[{trigger = \"x\", kind = \"sound\"}]").find("is not one of colour, shape, pattern, style"),
            std::string::npos);
  EXPECT_NE(with("concepts=[{trigger = \"x\", kind = \"style\"}]").find("needs a caption template with {trigger}"),
            std::string::npos);
  EXPECT_NE(with("colours=[{name = \"x\", rgb = \"red-ish\"}]").find(path + ": colours[0]"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// A world that extends another: tables merge key by key, arrays of tables are replaced whole; the
// shipped FLUX.2 world is the shapes world with FLUX.2's latent space and a klein [[models]] table.
TEST(World, ExtendsMergesTablesAndReplacesArrays) {
  const dt::testing::ScratchDir dir("world_extends");
  std::string shapes = read_file(kShapes);
  shapes.replace(shapes.find("steps = 4500"), 12, "steps = 4321");  // not the default, so its merge shows
  write_file_atomic(dir / "base.toml", shapes);
  write_file_atomic(dir / "variant.toml", "extends = \"base.toml\"\nsize = 48\n[vae]\nlatent_channels = 32\n"
                                          "[[backgrounds]]\nname = \"white\"\nrgb = \"#f5f5f5\"\n");
  const World base = load_world(dir / "base.toml"), variant = load_world(dir / "variant.toml");
  EXPECT_EQ(variant.config().size, 48);
  EXPECT_EQ(variant.config().vae.latent_channels, 32);
  EXPECT_EQ(variant.config().vae.steps, 4321);  // the rest of [vae] from base.toml
  EXPECT_EQ(variant.config().backgrounds.size(), 1u);
  EXPECT_EQ(variant.config().shapes.size(), base.config().shapes.size());
  EXPECT_EQ(variant.config().concepts.size(), base.config().concepts.size());

  const World flux2 = load_world(std::string(DT_SOURCE_DIR) + "/worlds/shapes-flux2.toml");
  EXPECT_EQ(flux2.config().vae.class_name, "AutoencoderKLFlux2");
  ASSERT_EQ(flux2.config().models.size(), 1u);
  EXPECT_EQ(flux2.config().models[0].family, "flux2-klein");
  EXPECT_EQ(flux2.config().concepts.size(), base.config().concepts.size());

  write_file_atomic(dir / "loop.toml", "extends = \"loop.toml\"\n");
  EXPECT_NE(dt::testing::error_of([&] { load_world(dir / "loop.toml"); }).find("more than 8 files"), std::string::npos);
  write_file_atomic(dir / "missing.toml", "extends = \"nowhere.toml\"\n");
  EXPECT_NE(dt::testing::error_of([&] { load_world(dir / "missing.toml"); }).find("nowhere.toml"), std::string::npos);
  write_file_atomic(dir / "number.toml", "extends = 3\n");
  EXPECT_NE(dt::testing::error_of([&] { load_world(dir / "number.toml"); }).find("'extends' must be a string"), std::string::npos);
}

}  // namespace
}  // namespace dt::world
