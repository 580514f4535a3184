// Test helpers: encoders for making small test images (JPEG with an EXIF
// orientation, PNGs of any colour type and bit depth).
#pragma once
#include <jpeglib.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image.h"
#include "testing/support.h"

namespace dt::testing {

// w × h RGB with four flat quadrants: red top-left, green top-right, blue bottom-left, white
// bottom-right.
inline Image quadrants(int64_t w, int64_t h) {
  Image im;
  im.width = w, im.height = h, im.channels = 3;
  im.pixels.resize(size_t(w * h * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const bool right = x >= w / 2, bottom = y >= h / 2;
      uint8_t* p = im.at(x, y);
      p[0] = uint8_t(!bottom && !right ? 255 : (bottom && right ? 255 : 0));
      p[1] = uint8_t(!bottom && right ? 255 : (bottom && right ? 255 : 0));
      p[2] = uint8_t(bottom ? 255 : 0);
    }
  return im;
}

// A big-endian TIFF block holding one IFD with the Orientation tag, as an APP1 payload.
inline std::string exif_block(int orientation) {
  const unsigned char tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8,             // header, IFD at 8
                                0, 1,                                     // one entry
                                0x01, 0x12, 0, 3, 0, 0, 0, 1,             // Orientation, SHORT, 1
                                0, static_cast<unsigned char>(orientation), 0, 0,  // value
                                0, 0, 0, 0};                              // no next IFD
  return std::string("Exif\0\0", 6) + std::string(reinterpret_cast<const char*>(tiff), sizeof tiff);
}

// JPEG bytes of an RGB image; orientation > 0 adds an EXIF APP1 segment with that tag.
inline std::string encode_jpeg(const Image& image, int quality = 95, int orientation = 0) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = JDIMENSION(image.width), c.image_height = JDIMENSION(image.height);
  c.input_components = 3, c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  if (orientation > 0) {
    const std::string exif = exif_block(orientation);
    jpeg_write_marker(&c, JPEG_APP0 + 1, reinterpret_cast<const JOCTET*>(exif.data()), unsigned(exif.size()));
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(image.at(0, c.next_scanline));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string out(reinterpret_cast<char*>(buffer), size);
  jpeg_destroy_compress(&c);
  std::free(buffer);
  return out;
}

// PNG bytes of raw rows in any colour type / bit depth (16-bit samples big-endian, as PNG
// stores them), with an optional palette, tRNS chunk and EXIF block (as exif_block makes).
inline std::string encode_png_raw(int width, int height, int color_type, int bit_depth,
                                  const std::vector<std::string>& rows, const std::vector<png_color>& palette = {},
                                  const std::vector<png_byte>& trns = {}, const std::string& exif = "") {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out, [](png_structp p, png_bytep d, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<char*>(d), n);
      },
      nullptr);
  png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), bit_depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), int(palette.size()));
  if (!trns.empty()) png_set_tRNS(png, info, trns.data(), int(trns.size()), nullptr);
  if (!exif.empty())  // eXIf holds the TIFF part without the "Exif\0\0" prefix
    png_set_eXIf_1(png, info, png_uint_32(exif.size() - 6),
                   reinterpret_cast<png_bytep>(const_cast<char*>(exif.data() + 6)));
  png_write_info(png, info);
  for (const auto& r : rows) png_write_row(png, reinterpret_cast<png_const_bytep>(r.data()));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

// A PNG with its IHDR width and height replaced (CRC recomputed, so only the size is wrong).
inline std::string png_with_size(std::string png, uint32_t width, uint32_t height) {
  for (int i = 0; i < 4; ++i) png[16 + i] = char(width >> (24 - 8 * i)), png[20 + i] = char(height >> (24 - 8 * i));
  const uint32_t crc = uint32_t(::crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  for (int i = 0; i < 4; ++i) png[29 + i] = char(crc >> (24 - 8 * i));
  return png;
}

}  // namespace dt::testing
