#include "data/image.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace dt {

Rgb parse_color(const std::string& text) {
  if (text == "white") return {255, 255, 255};
  if (text == "black") return {0, 0, 0};
  if (text == "gray" || text == "grey") return {128, 128, 128};
  auto hex = [&](size_t i) -> int {
    const char c = text[i];
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (text.size() == 7 && text[0] == '#') {
    Rgb rgb;
    bool ok = true;
    for (int c = 0; c < 3; ++c) {
      const int hi = hex(1 + 2 * c), lo = hex(2 + 2 * c);
      ok = ok && hi >= 0 && lo >= 0;
      rgb[c] = uint8_t(hi * 16 + lo);
    }
    if (ok) return rgb;
  }
  throw Error("colour '" + text + "': expected #rrggbb, white, black or gray");
}

Image composite(const Image& image, Rgb background) {
  if (image.channels == 3) return image;
  Image out;
  out.width = image.width, out.height = image.height, out.channels = 3;
  out.pixels.resize(size_t(image.width * image.height * 3));
  const size_t n = size_t(image.width * image.height);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = image.pixels.data() + 4 * i;
    const int a = p[3];
    for (int c = 0; c < 3; ++c) out.pixels[3 * i + c] = uint8_t((p[c] * a + background[c] * (255 - a) + 127) / 255);
  }
  return out;
}

Image apply_orientation(const Image& image, int orientation) {
  if (orientation <= 1 || orientation > 8) return image;
  const int64_t w = image.width, h = image.height;
  const bool swap = orientation >= 5;
  Image out;
  out.width = swap ? h : w, out.height = swap ? w : h, out.channels = image.channels;
  out.pixels.resize(image.pixels.size());
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      int64_t sx = x, sy = y;  // the source pixel shown at (x, y)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                  // mirrored
        case 3: sx = w - 1 - x, sy = h - 1 - y; break;  // rotated 180°
        case 4: sy = h - 1 - y; break;                  // flipped
        case 5: sx = y, sy = x; break;                  // transposed
        case 6: sx = y, sy = h - 1 - x; break;          // needs 90° clockwise
        case 7: sx = w - 1 - y, sy = h - 1 - x; break;  // transversed
        case 8: sx = w - 1 - y, sy = x; break;          // needs 90° counter-clockwise
      }
      std::copy_n(image.at(sx, sy), image.channels, out.at(x, y));
    }
  return out;
}

Image image_from_tensor(const at::Tensor& chw) {
  if (chw.dim() != 3 || chw.size(0) != 3) throw Error("image_from_tensor: expected [3, H, W]");
  at::Tensor hwc = ((chw.detach().to(at::kCPU, at::kFloat) + 1.0) * 127.5).round().clamp(0, 255)
                       .to(at::kByte).permute({1, 2, 0}).contiguous();
  Image out;
  out.height = chw.size(1), out.width = chw.size(2), out.channels = 3;
  out.pixels.assign(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
  return out;
}

at::Tensor image_to_tensor(const Image& image) {
  if (image.channels != 3) throw Error("image_to_tensor: expected an RGB image");
  at::Tensor hwc = at::empty({image.height, image.width, 3}, at::kByte);
  std::copy(image.pixels.begin(), image.pixels.end(), hwc.data_ptr<uint8_t>());
  return hwc.permute({2, 0, 1}).to(at::kFloat).div_(127.5).sub_(1.0).contiguous();
}

}  // namespace dt
