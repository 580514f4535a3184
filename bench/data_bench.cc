// The data pipeline's CPU costs, as ratios measured in one run on the same files:
//   * dataset scan, first time (decode every image to validate it) vs. again (hash only);
//   * preparing one training image (decode, resize, crop) vs. reading its cached latent;
//   * SHA-256 of the image bytes vs. decoding them.
// Images: 12 photo-like 1536×1024 JPEGs; bucket resolution 512; fake 8× pooling "VAE".
//
// usage: data_bench [images, default 12]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/hash.h"
#include "data/cache.h"
#include "data/dataset.h"
#include "testing/fake_models.h"
#include "testing/images.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Smooth gradients plus mild noise: compresses like a photo, unlike pure noise.
dt::Image photo_like(int64_t w, int64_t h, uint32_t seed) {
  dt::Image im;
  im.width = w, im.height = h;
  im.pixels.resize(size_t(w * h * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        seed = seed * 1664525u + 1013904223u;
        const int64_t v = (x * (c + 1) + y * (3 - c)) * 255 / (w + h) + int64_t(seed >> 29) - 4;
        im.at(x, y)[c] = uint8_t(std::clamp<int64_t>(v, 0, 255));
      }
  return im;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 12;
  dt::testing::ScratchDir dir("data_bench");
  for (int i = 0; i < n; ++i) {
    const std::string name = dir / ("images/" + std::to_string(i));
    dt::testing::write(name + ".jpg", dt::testing::encode_jpeg(photo_like(1536, 1024, uint32_t(i + 1)), 92));
    dt::testing::write(name + ".txt", "image " + std::to_string(i));
  }
  dt::DataConfig config;
  config.cache_dir = dir / "cache";
  config.resolutions = {512};
  dt::ConceptConfig concept_config;
  concept_config.path = dir / "images";
  config.concepts.push_back(concept_config);

  auto t = Clock::now();
  const dt::Manifest manifest = dt::scan_dataset(config, "", 16);
  const double first_scan = seconds_since(t);
  t = Clock::now();
  dt::scan_dataset(config, "", 16);
  const double rescan = seconds_since(t);

  double hashing = 0, decoding = 0;
  for (const auto& s : manifest.samples) {
    const std::string bytes = dt::read_file(s.path);
    t = Clock::now();
    dt::sha256_hex(bytes);
    hashing += seconds_since(t);
    t = Clock::now();
    dt::decode_image(bytes, s.path);
    decoding += seconds_since(t);
  }

  dt::write_file_atomic(dir / "vae", "bench-vae");
  dt::write_file_atomic(dir / "te", "bench-te");
  dt::testing::FakeFamily family;
  dt::CacheModels models{&family, dir / "vae", dir / "te", {}};
  const dt::DataCache cache(config, "", dt::fill_cache(manifest, config, "", models, false));
  t = Clock::now();
  for (const auto& s : manifest.samples) dt::load_training_image(s, dt::parse_color(config.background));
  const double prepare = seconds_since(t);
  t = Clock::now();
  for (const auto& s : manifest.samples) cache.latent(s);
  const double cached = seconds_since(t);

  std::printf("images: %d JPEG 1536x1024, bucket %lldx%lld\n", n, (long long)manifest.samples[0].bucket.width,
              (long long)manifest.samples[0].bucket.height);
  std::printf("scan first %.1f ms/image, again %.2f ms/image: %.1fx faster\n", 1e3 * first_scan / n,
              1e3 * rescan / n, first_scan / rescan);
  std::printf("sha256 %.2f ms/image (%.0f MB/s) = %.2f of a decode (%.1f ms)\n", 1e3 * hashing / n,
              double(std::filesystem::file_size(manifest.samples[0].path)) * n / hashing / 1e6, hashing / decoding,
              1e3 * decoding / n);
  std::printf("prepare image %.1f ms, cached latent read %.3f ms: %.0fx\n", 1e3 * prepare / n, 1e3 * cached / n,
              prepare / cached);
  return 0;
}
