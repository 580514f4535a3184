// Antialiased resampling (Lanczos-3 whose support widens with the downscale factor, as in PIL)
// and the crop that takes a bucket-sized window out of the resized image.
#pragma once
#include <cstdint>

#include "data/image.h"

namespace dt {

// A window of the image resized to resized_width × resized_height: its top-left corner and size.
struct Crop {
  int64_t resized_width = 0, resized_height = 0;
  int64_t x = 0, y = 0, width = 0, height = 0;
  bool operator==(const Crop&) const = default;
};

// Resizes an RGB image and returns only the crop window; rows and columns outside it are never
// computed. Output values are rounded to 8 bits.
Image resize_crop(const Image& rgb, const Crop& crop);
inline Image resize(const Image& rgb, int64_t width, int64_t height) {
  return resize_crop(rgb, Crop{width, height, 0, 0, width, height});
}

}  // namespace dt
