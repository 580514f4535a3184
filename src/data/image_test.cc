#include "data/image.h"

#include <gtest/gtest.h>
#include <webp/encode.h>

#include "core/error.h"
#include "data/resize.h"
#include "testing/images.h"

namespace dt {
namespace {

using testing::encode_jpeg;
using testing::encode_png_raw;
using testing::quadrants;

std::string error_of(const std::string& bytes, const std::string& name = "x.img") {
  try {
    decode_image(bytes, name);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// The colour near a corner, classified: r, g, b, w (white) or ? (none of them).
char corner(const Image& im, bool right, bool bottom) {
  const uint8_t* p = im.at(right ? im.width - 3 : 2, bottom ? im.height - 3 : 2);
  auto hi = [](uint8_t v) { return v > 200; };
  auto lo = [](uint8_t v) { return v < 55; };
  if (hi(p[0]) && hi(p[1]) && hi(p[2])) return 'w';
  if (hi(p[0]) && lo(p[1]) && lo(p[2])) return 'r';
  if (lo(p[0]) && hi(p[1]) && lo(p[2])) return 'g';
  if (lo(p[0]) && lo(p[1]) && hi(p[2])) return 'b';
  return '?';
}

std::string corners(const Image& im) {  // top-left, top-right, bottom-left, bottom-right
  return {corner(im, false, false), corner(im, true, false), corner(im, false, true), corner(im, true, true)};
}

TEST(ImageCodec, ExifOrientationUprightsJpeg) {
  // Stored pixels 64 × 32: r g / b w. Each orientation tag says how to show them upright.
  const Image stored = quadrants(64, 32);
  struct Case {
    int orientation;
    int64_t width, height;
    const char* corners;
  };
  const Case cases[] = {
      {1, 64, 32, "rgbw"}, {2, 64, 32, "grwb"}, {3, 64, 32, "wbgr"}, {4, 64, 32, "bwrg"},
      {5, 32, 64, "rbgw"}, {6, 32, 64, "brwg"}, {7, 32, 64, "wgbr"}, {8, 32, 64, "gwrb"},
  };
  for (const Case& c : cases) {
    const Image im = decode_image(encode_jpeg(stored, 95, c.orientation), "o.jpg");
    EXPECT_EQ(im.width, c.width) << c.orientation;
    EXPECT_EQ(im.height, c.height) << c.orientation;
    EXPECT_EQ(corners(im), c.corners) << "orientation " << c.orientation;
  }
  EXPECT_EQ(corners(decode_image(encode_jpeg(stored), "plain.jpg")), "rgbw");
}

TEST(ImageCodec, ExifOrientationInPng) {
  const Image stored = quadrants(32, 16);
  std::vector<std::string> rows;
  for (int64_t y = 0; y < 16; ++y) rows.emplace_back(reinterpret_cast<const char*>(stored.at(0, y)), 32 * 3);
  const Image im =
      decode_image(encode_png_raw(32, 16, PNG_COLOR_TYPE_RGB, 8, rows, {}, {}, testing::exif_block(6)), "o.png");
  EXPECT_EQ(im.width, 16);
  EXPECT_EQ(im.height, 32);
  EXPECT_EQ(corners(im), "brwg");
}

// Damaged files of every format either decode or fail with dt::Error: never a crash.
TEST(ImageCodec, MutatedFilesFailCleanly) {
  Image small = quadrants(24, 16);
  uint8_t* webp = nullptr;
  const size_t webp_size = WebPEncodeRGB(small.pixels.data(), 24, 16, 24 * 3, 80, &webp);
  const std::vector<std::string> originals = {encode_jpeg(small, 90, 6), encode_png(small, {{"k", "v"}}),
                                              std::string(reinterpret_cast<char*>(webp), webp_size)};
  WebPFree(webp);
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  int decoded = 0, rejected = 0;
  for (const std::string& original : originals) {
    for (size_t cut = 1; cut < original.size(); cut += 7) {
      try {
        decode_image(original.substr(0, cut), "cut");
        ++decoded;
      } catch (const Error&) {
        ++rejected;
      }
    }
    for (int trial = 0; trial < 300; ++trial) {
      std::string bytes = original;
      for (int k = 0; k < 1 + int(next() % 4); ++k) bytes[next() % bytes.size()] = char(next() >> 24);
      try {
        decode_image(bytes, "mutated");
        ++decoded;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(rejected, 100);
  EXPECT_GT(decoded + rejected, 900);
}

TEST(ImageCodec, PngRoundTripWithTextAndAlpha) {
  Image rgba;
  rgba.width = 5, rgba.height = 3, rgba.channels = 4;
  for (int i = 0; i < 15 * 4; ++i) rgba.pixels.push_back(uint8_t(i * 17 % 256));
  const std::vector<std::pair<std::string, std::string>> text = {{"parameters", "steps: 8, cfg: 1.0, ünïcode ✓"},
                                                                 {"seed", "42"}};
  const std::string bytes = encode_png(rgba, text);
  const Image back = decode_image(bytes, "t.png");
  EXPECT_EQ(back.channels, 4);
  EXPECT_EQ(back.pixels, rgba.pixels);
  EXPECT_EQ(png_text(bytes, "t.png"), text);

  // Straight alpha over a background: (c·a + bg·(255 − a)) / 255, rounded.
  Image px;
  px.width = 3, px.height = 1, px.channels = 4;
  px.pixels = {200, 100, 0, 255, 200, 100, 0, 0, 200, 100, 0, 128};
  const Image flat = composite(decode_image(encode_png(px), "a.png"), parse_color("#204060"));
  EXPECT_EQ(flat.channels, 3);
  EXPECT_EQ(flat.pixels, (std::vector<uint8_t>{200, 100, 0, 32, 64, 96, 116, 82, 48}));
}

TEST(ImageCodec, PngSixteenBitGrayPaletteAndTransparency) {
  // 16-bit RGB: each sample is rounded to 8 bits (v · 255 / 65535).
  std::string row16;
  for (uint16_t v : {0, 65535, 32896, 257, 1000, 65000}) row16 += char(v >> 8), row16 += char(v & 255);
  const Image c16 = decode_image(encode_png_raw(2, 1, PNG_COLOR_TYPE_RGB, 16, {row16}), "16.png");
  EXPECT_EQ(c16.channels, 3);
  EXPECT_EQ(c16.pixels, (std::vector<uint8_t>{0, 255, 128, 1, 4, 253}));

  // 4-bit grayscale → RGB, gray levels scaled to 0..255.
  const Image gray = decode_image(encode_png_raw(2, 1, PNG_COLOR_TYPE_GRAY, 4, {std::string(1, char(0x0f))}), "g.png");
  EXPECT_EQ(gray.pixels, (std::vector<uint8_t>{0, 0, 0, 255, 255, 255}));

  // Palette with one transparent entry → RGBA.
  const std::vector<png_color> palette = {{10, 20, 30}, {40, 50, 60}};
  const Image pal = decode_image(
      encode_png_raw(2, 1, PNG_COLOR_TYPE_PALETTE, 8, {std::string("\x00\x01", 2)}, palette, {0}), "p.png");
  EXPECT_EQ(pal.channels, 4);
  EXPECT_EQ(pal.pixels, (std::vector<uint8_t>{10, 20, 30, 0, 40, 50, 60, 255}));
}

TEST(ImageCodec, WebpLosslessDecodes) {
  const Image im = quadrants(16, 8);
  uint8_t* out = nullptr;
  const size_t size = WebPEncodeLosslessRGB(im.pixels.data(), 16, 8, 16 * 3, &out);
  ASSERT_GT(size, 0u);
  const std::string bytes(reinterpret_cast<char*>(out), size);
  WebPFree(out);
  const Image back = decode_image(bytes, "q.webp");
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.pixels, im.pixels);
  EXPECT_NE(error_of(bytes.substr(0, bytes.size() / 2), "half.webp").find("half.webp: corrupt"), std::string::npos);
}

TEST(ImageCodec, BadInputNamesTheFileAndTheProblem) {
  Image noise = quadrants(128, 128);
  uint32_t state = 1;
  for (auto& v : noise.pixels) v = uint8_t((state = state * 1664525u + 1013904223u) >> 24);
  const std::string jpeg = encode_jpeg(noise);
  const std::string png = encode_png(quadrants(8, 8));
  EXPECT_EQ(error_of("", "e.jpg"), "e.jpg: file is empty");
  EXPECT_EQ(error_of("GIF89a......", "a.gif"), "a.gif: unsupported image format (GIF; use JPEG, PNG or WebP)");
  EXPECT_EQ(error_of("hello world", "t.png"), "t.png: not an image (unknown format; use JPEG, PNG or WebP)");
  EXPECT_NE(error_of(jpeg.substr(0, jpeg.size() / 2), "cut.jpg").find("cut.jpg: corrupt or truncated JPEG"),
            std::string::npos);
  EXPECT_NE(error_of(jpeg.substr(0, 40), "head.jpg").find("head.jpg: corrupt"), std::string::npos);
  EXPECT_EQ(error_of(png.substr(0, png.size() - 20), "cut.png"), "cut.png: corrupt PNG: file is truncated");
  std::string flipped = png;
  flipped[40] ^= 0x55;  // inside IDAT: CRC mismatch
  EXPECT_NE(error_of(flipped, "crc.png").find("crc.png: corrupt PNG"), std::string::npos);
  EXPECT_NE(error_of(testing::png_with_size(png, 0, 8), "zero.png").find("zero.png: corrupt PNG"), std::string::npos);
}

TEST(Resize, IdentityConstantAndAntialiasing) {
  const Image q = quadrants(20, 10);
  EXPECT_EQ(resize(q, 20, 10).pixels, q.pixels);  // Lanczos taps at integer offsets vanish

  Image flat;
  flat.width = 37, flat.height = 23;
  flat.pixels.assign(size_t(37 * 23 * 3), 77);
  for (uint8_t v : resize(flat, 11, 50).pixels) EXPECT_EQ(v, 77);

  // A one-pixel checkerboard shrunk 4× averages to mid-gray instead of aliasing.
  Image checker;
  checker.width = checker.height = 64;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) checker.pixels.push_back((x + y) % 2 ? 255 : 0);
  for (uint8_t v : resize(checker, 16, 16).pixels) EXPECT_NEAR(v, 128, 2);
}

TEST(Resize, CropWindowEqualsCroppedFullResize) {
  const Image q = testing::quadrants(90, 70);
  const Image full = resize(q, 60, 47);
  const Crop crop{60, 47, 7, 5, 32, 32};
  const Image window = resize_crop(q, crop);
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(window.at(x, y)[c], full.at(x + 7, y + 5)[c]);
  EXPECT_THROW(resize_crop(q, Crop{60, 47, 40, 0, 32, 32}), Error);
}

TEST(ImageTensor, RoundTrip) {
  const Image q = quadrants(6, 4);
  const at::Tensor t = image_to_tensor(q);
  EXPECT_EQ(t.sizes(), (at::IntArrayRef{3, 4, 6}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[1][0][0].item<float>(), -1.0f);
  EXPECT_EQ(image_from_tensor(t).pixels, q.pixels);
}

}  // namespace
}  // namespace dt
