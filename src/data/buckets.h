// Aspect-ratio buckets: every image is trained at one of a few sizes near its aspect ratio, all
// with about resolution² pixels and sides a multiple of the family's pixel_multiple().
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/resize.h"

namespace dt {

struct Bucket {
  int64_t width = 0, height = 0;
  int64_t resolution = 0;  // the target resolution it belongs to
  bool operator==(const Bucket&) const = default;
};

// One bucket per aspect ratio r ≥ 1, landscape and portrait, with about resolution² pixels and
// sides rounded to multiples of `multiple`; deduplicated, sorted by width / height. Throws
// dt::Error for non-positive settings or ratios below 1.
std::vector<Bucket> make_buckets(int64_t resolution, const std::vector<double>& aspect_ratios, int64_t multiple);

// The bucket whose aspect ratio is nearest (in log scale) to width / height; ties go to the
// earlier bucket. `buckets` must be non-empty.
const Bucket& nearest_bucket(const std::vector<Bucket>& buckets, int64_t width, int64_t height);

// Resize to cover the bucket (aspect kept), then a bucket-sized window: centered, or at an
// offset drawn from `seed` and `key` when random (the same for the same inputs, on any machine).
Crop choose_crop(int64_t width, int64_t height, const Bucket& bucket, bool random, uint64_t seed,
                 const std::string& key);

}  // namespace dt
