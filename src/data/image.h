// Images in memory and the codecs: JPEG (libjpeg), PNG (libpng), WebP (libwebp) decoding with the
// EXIF orientation applied; PNG encoding with text chunks.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace dt {

// 8-bit interleaved pixels, rows top to bottom: channels 3 (RGB) or 4 (RGBA, straight alpha).
struct Image {
  int64_t width = 0, height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels
  uint8_t* at(int64_t x, int64_t y) { return pixels.data() + (y * width + x) * channels; }
  const uint8_t* at(int64_t x, int64_t y) const { return pixels.data() + (y * width + x) * channels; }
};

using Rgb = std::array<uint8_t, 3>;

// "#rrggbb", "white", "black" or "gray"; throws dt::Error otherwise.
Rgb parse_color(const std::string& text);

// "jpeg", "png" or "webp" from the leading bytes; throws dt::Error naming `name` for anything
// else (naming the format when it is a known one: GIF, BMP, TIFF, HEIF/AVIF, ...).
std::string image_format(const std::string& bytes, const std::string& name);

// Decodes fully, upright (EXIF orientation applied), as RGB or RGBA (16-bit PNG is rounded to
// 8 bits, grayscale and palette expanded). Corrupt, truncated or empty data throws dt::Error
// naming `name`.
Image decode_image(const std::string& bytes, const std::string& name);
Image read_image(const std::string& path);

// RGBA over a solid background → RGB (RGB input is returned unchanged).
Image composite(const Image& image, Rgb background);

// Applies an EXIF orientation (1..8) to upright the pixels.
Image apply_orientation(const Image& image, int orientation);

// PNG bytes (8-bit RGB/RGBA) with tEXt/iTXt chunks (key, value) — e.g. generation parameters.
std::string encode_png(const Image& image, const std::vector<std::pair<std::string, std::string>>& text = {});
void write_png(const std::string& path, const Image& image,
               const std::vector<std::pair<std::string, std::string>>& text = {});  // atomic
// The text chunks of a PNG, in file order.
std::vector<std::pair<std::string, std::string>> png_text(const std::string& bytes, const std::string& name);

// [3, H, W] float in [-1, 1] (any device) → RGB image, rounded and clamped.
Image image_from_tensor(const at::Tensor& chw);
// RGB image → [3, H, W] float32 in [-1, 1].
at::Tensor image_to_tensor(const Image& image);

}  // namespace dt
