#include "data/buckets.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/hash.h"

namespace dt {
namespace {

int64_t round_to(double x, int64_t multiple) {
  return std::max<int64_t>(multiple, std::llround(x / double(multiple)) * multiple);
}

double log_aspect(int64_t w, int64_t h) { return std::log(double(w) / double(h)); }

}  // namespace

std::vector<Bucket> make_buckets(int64_t resolution, const std::vector<double>& aspect_ratios, int64_t multiple) {
  if (resolution <= 0) throw Error("resolution must be positive (got " + std::to_string(resolution) + ")");
  if (multiple <= 0) throw Error("pixel multiple must be positive");
  if (aspect_ratios.empty()) throw Error("aspect_ratios is empty");
  std::vector<Bucket> buckets;
  for (double r : aspect_ratios) {
    if (!(r >= 1.0) || !std::isfinite(r))
      throw Error("aspect ratio " + std::to_string(r) + " must be >= 1 (long side / short side)");
    const int64_t long_side = round_to(double(resolution) * std::sqrt(r), multiple);
    const int64_t short_side = round_to(double(resolution) / std::sqrt(r), multiple);
    buckets.push_back({long_side, short_side, resolution});
    buckets.push_back({short_side, long_side, resolution});
  }
  std::sort(buckets.begin(), buckets.end(), [](const Bucket& a, const Bucket& b) {
    return a.width * b.height < b.width * a.height || (a.width * b.height == b.width * a.height && a.width < b.width);
  });
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  return buckets;
}

const Bucket& nearest_bucket(const std::vector<Bucket>& buckets, int64_t width, int64_t height) {
  const double target = log_aspect(width, height);
  size_t best = 0;
  for (size_t i = 1; i < buckets.size(); ++i)
    if (std::abs(log_aspect(buckets[i].width, buckets[i].height) - target) <
        std::abs(log_aspect(buckets[best].width, buckets[best].height) - target))
      best = i;
  return buckets.at(best);
}

Crop choose_crop(int64_t width, int64_t height, const Bucket& bucket, bool random, uint64_t seed,
                 const std::string& key) {
  const double scale = std::max(double(bucket.width) / double(width), double(bucket.height) / double(height));
  Crop c;
  c.resized_width = std::max<int64_t>(bucket.width, std::llround(double(width) * scale));
  c.resized_height = std::max<int64_t>(bucket.height, std::llround(double(height) * scale));
  c.width = bucket.width, c.height = bucket.height;
  const int64_t slack_x = c.resized_width - c.width, slack_y = c.resized_height - c.height;
  if (!random) {
    c.x = slack_x / 2, c.y = slack_y / 2;
    return c;
  }
  // The offsets come from a hash, not a generator, so one sample's crop never depends on others.
  const auto digest = [&] {
    Sha256 h;
    h.update("crop:" + std::to_string(seed) + ":" + key);
    return h.digest();
  }();
  uint64_t a = 0, b = 0;
  for (int i = 0; i < 8; ++i) a = a << 8 | digest[size_t(i)], b = b << 8 | digest[size_t(8 + i)];
  c.x = int64_t(a % uint64_t(slack_x + 1)), c.y = int64_t(b % uint64_t(slack_y + 1));
  return c;
}

}  // namespace dt
