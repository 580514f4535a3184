// Decoders and the PNG encoder. libjpeg and libpng report errors by longjmp; every buffer they
// write into is allocated before the setjmp point so nothing is skipped on the way back.
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include <csetjmp>
#include <cstring>

#include "core/error.h"
#include "data/exif.h"
#include "data/image.h"
#include "io/atomic_file.h"

namespace dt {
namespace {

// Largest image accepted: 2^28 pixels (16384 × 16384), 1 GiB as RGBA.
constexpr int64_t kMaxPixels = int64_t(1) << 28;
// No file expands beyond these ratios (deflate: 1032:1; JPEG: at least one bit per 8×8 block
// even in progressive mode), so a tiny file claiming a huge size is refused before the pixels
// are allocated.
constexpr int64_t kPngMaxExpansion = 1032, kJpegMaxPixelsPerByte = 1024;

void check_size(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0) throw file_error(name, "image has zero size");
  if (width * height > kMaxPixels)
    throw file_error(name, "image too large (" + std::to_string(width) + "x" + std::to_string(height) + ")");
}

bool starts_with(const std::string& bytes, size_t offset, const char* magic) {
  const size_t n = std::strlen(magic);
  return bytes.size() >= offset + n && bytes.compare(offset, n, magic) == 0;
}

// ---- JPEG ----

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = "";
  int warnings = 0;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  e->mgr.format_message(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings (premature end of data, corrupt entropy data) mean missing or invented pixels.
void jpeg_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  if (level >= 0) return;  // trace messages
  if (e->warnings++ == 0) e->mgr.format_message(cinfo, e->message);
}

Image decode_jpeg(const std::string& bytes, const std::string& name, std::string& exif) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  Image image;
  std::vector<uint8_t> row;
  std::string failure;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw file_error(name, std::string("corrupt JPEG: ") + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && !std::memcmp(m->data, "Exif\0\0", 6))
      exif.assign(reinterpret_cast<const char*>(m->data), m->data_length);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int64_t width = cinfo.output_width, height = cinfo.output_height;
  if (width <= 0 || height <= 0 || width * height > kMaxPixels ||
      width * height > kJpegMaxPixelsPerByte * int64_t(bytes.size())) {
    failure = width <= 0 || height <= 0      ? "image has zero size"
              : width * height > kMaxPixels ? "image too large"
                                             : "corrupt or truncated JPEG: too little data for its size";
    jpeg_destroy_decompress(&cinfo);
    throw file_error(name, failure);
  }
  image.width = width, image.height = height, image.channels = 3;
  image.pixels.resize(size_t(width * height * 3));
  row.resize(size_t(width) * cinfo.output_components);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* out = image.at(0, cinfo.output_scanline);
    JSAMPROW rows[1] = {cmyk ? row.data() : out};
    jpeg_read_scanlines(&cinfo, rows, 1);
    if (cmyk)  // Adobe writes inverted CMYK; with inverted values, R = C·K / 255 and so on
      for (int64_t x = 0; x < width; ++x) {
        const uint8_t* p = row.data() + 4 * x;
        for (int c = 0; c < 3; ++c) out[3 * x + c] = uint8_t((p[c] * p[3] + 127) / 255);
      }
  }
  jpeg_finish_decompress(&cinfo);
  const int warnings = err.warnings;
  jpeg_destroy_decompress(&cinfo);
  if (warnings) throw file_error(name, std::string("corrupt or truncated JPEG: ") + err.message);
  return image;
}

// ---- PNG ----

struct PngState {
  const std::string* bytes;
  size_t offset = 0;
  std::jmp_buf jump;
  std::string message;
};

void png_fail(png_structp png, png_const_charp message) {
  auto* s = static_cast<PngState*>(png_get_error_ptr(png));
  s->message = message;
  std::longjmp(s->jump, 1);
}

void png_warn(png_structp, png_const_charp) {}  // ancillary-chunk problems: the pixels are intact

void png_read_bytes(png_structp png, png_bytep out, png_size_t size) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (size > s->bytes->size() - s->offset) png_error(png, "file is truncated");
  std::memcpy(out, s->bytes->data() + s->offset, size);
  s->offset += size;
}

// Every chunk must fit in the file: libpng allocates a chunk's claimed length before reading it.
void check_png_chunks(const std::string& bytes, const std::string& name) {
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  for (size_t at = 8; at + 8 <= bytes.size();) {
    const uint64_t length = be32(at);
    if (length > bytes.size() - at - 8 || bytes.size() - at - 8 - length < 4)
      throw file_error(name, "corrupt PNG: file is truncated");
    if (!bytes.compare(at + 4, 4, "IEND")) return;
    at += 12 + length;
  }
  throw file_error(name, "corrupt PNG: file is truncated");
}

Image decode_png(const std::string& bytes, const std::string& name, std::string& exif) {
  check_png_chunks(bytes, name);
  PngState state;
  state.bytes = &bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_fail, png_warn);
  if (!png) throw file_error(name, "out of memory");
  png_infop info = png_create_info_struct(png);
  Image image;
  std::vector<png_bytep> rows;
  if (setjmp(state.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw file_error(name, "corrupt PNG: " + state.message);
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, &state, png_read_bytes);
  png_set_user_limits(png, 1 << 16, 1 << 16);
  png_read_info(png, info);
  const int64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  if (width * height > kMaxPixels) png_error(png, "image too large");
  if (height * (int64_t(png_get_rowbytes(png, info)) + 1) > kPngMaxExpansion * int64_t(bytes.size()))
    png_error(png, "too little data for its size");
#ifdef PNG_eXIf_SUPPORTED
  png_uint_32 exif_size = 0;
  png_bytep exif_data = nullptr;
  if (png_get_eXIf_1(png, info, &exif_size, &exif_data) && exif_data)
    exif.assign(reinterpret_cast<const char*>(exif_data), exif_size);
#endif
  const int color = png_get_color_type(png, info);
  const bool alpha = (color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
  png_set_expand(png);  // palette → RGB, low-bit gray → 8 bits, tRNS → alpha
  png_set_scale_16(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  image.width = width, image.height = height, image.channels = alpha ? 4 : 3;
  if (png_get_rowbytes(png, info) != size_t(width * image.channels)) png_error(png, "unexpected pixel layout");
  image.pixels.resize(size_t(width * height * image.channels));
  rows.resize(size_t(height));
  for (int64_t y = 0; y < height; ++y) rows[size_t(y)] = image.at(0, y);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

// ---- WebP ----

Image decode_webp(const std::string& bytes, const std::string& name, std::string& exif) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(data, bytes.size(), &features) != VP8_STATUS_OK)
    throw file_error(name, "corrupt WebP header");
  if (features.has_animation) throw file_error(name, "animated WebP is not supported");
  check_size(features.width, features.height, name);
  Image image;
  image.width = features.width, image.height = features.height, image.channels = features.has_alpha ? 4 : 3;
  image.pixels.resize(size_t(image.width * image.height * image.channels));
  const int stride = int(image.width * image.channels);
  const bool ok = features.has_alpha
                      ? WebPDecodeRGBAInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), stride)
                      : WebPDecodeRGBInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), stride);
  if (!ok) throw file_error(name, "corrupt or truncated WebP");
  WebPData whole{data, bytes.size()};
  if (WebPDemuxer* demux = WebPDemux(&whole)) {
    WebPChunkIterator chunk;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &chunk))
      exif.assign(reinterpret_cast<const char*>(chunk.chunk.bytes), chunk.chunk.size);
    WebPDemuxReleaseChunkIterator(&chunk);
    WebPDemuxDelete(demux);
  }
  return image;
}

}  // namespace

std::string image_format(const std::string& bytes, const std::string& name) {
  if (bytes.empty()) throw file_error(name, "file is empty");
  if (starts_with(bytes, 0, "\xff\xd8\xff")) return "jpeg";
  if (starts_with(bytes, 0, "\x89PNG\r\n\x1a\n")) return "png";
  if (starts_with(bytes, 0, "RIFF") && starts_with(bytes, 8, "WEBP")) return "webp";
  const char* known = starts_with(bytes, 0, "GIF8")                                      ? "GIF"
                      : starts_with(bytes, 0, "BM")                                      ? "BMP"
                      : starts_with(bytes, 0, "II*") || starts_with(bytes, 0, "MM\0*")   ? "TIFF"
                      : starts_with(bytes, 4, "ftypavif")                                ? "AVIF"
                      : starts_with(bytes, 4, "ftyphei") || starts_with(bytes, 4, "ftypmif") ? "HEIF"
                      : starts_with(bytes, 0, "\xff\x0a")                                ? "JPEG XL"
                                                                                         : nullptr;
  throw file_error(name, known ? std::string("unsupported image format (") + known + "; use JPEG, PNG or WebP)"
                               : "not an image (unknown format; use JPEG, PNG or WebP)");
}

Image decode_image(const std::string& bytes, const std::string& name) {
  const std::string format = image_format(bytes, name);
  std::string exif;
  Image image = format == "jpeg" ? decode_jpeg(bytes, name, exif)
                : format == "png" ? decode_png(bytes, name, exif)
                                  : decode_webp(bytes, name, exif);
  check_size(image.width, image.height, name);
  return exif.empty() ? image : apply_orientation(image, exif_orientation(exif));
}

Image read_image(const std::string& path) { return decode_image(read_file(path), path); }

// ---- PNG encoding ----

namespace {

struct PngWriter {
  std::string out;
  std::jmp_buf jump;
  std::string message;
};

void png_write_bytes(png_structp png, png_bytep data, png_size_t size) {
  static_cast<PngWriter*>(png_get_io_ptr(png))->out.append(reinterpret_cast<const char*>(data), size);
}
void png_flush_nothing(png_structp) {}
void png_write_fail(png_structp png, png_const_charp message) {
  auto* w = static_cast<PngWriter*>(png_get_error_ptr(png));
  w->message = message;
  std::longjmp(w->jump, 1);
}

bool is_latin1_key(const std::string& s) {
  if (s.empty() || s.size() > 79) return false;
  for (unsigned char c : s)
    if (c < 32 || c > 126) return false;
  return true;
}

// The libpng part of encoding; only plain pointers live across its setjmp.
void encode_png_rows(const Image& image, ::png_text* chunks, int chunk_count, png_bytep* rows, PngWriter& writer) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &writer, png_write_fail, png_warn);
  if (!png) throw Error("encode_png: out of memory");
  png_infop info = png_create_info_struct(png);
  if (setjmp(writer.jump)) {
    png_destroy_write_struct(&png, &info);
    throw Error("encode_png: " + writer.message);
  }
  if (!info) png_error(png, "out of memory");
  png_set_write_fn(png, &writer, png_write_bytes, png_flush_nothing);
  png_set_IHDR(png, info, png_uint_32(image.width), png_uint_32(image.height), 8,
               image.channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (chunk_count) png_set_text(png, info, chunks, chunk_count);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
}

}  // namespace

std::string encode_png(const Image& image, const std::vector<std::pair<std::string, std::string>>& text) {
  if (image.channels != 3 && image.channels != 4) throw Error("encode_png: image must be RGB or RGBA");
  check_size(image.width, image.height, "encode_png");
  for (const auto& [k, _] : text)
    if (!is_latin1_key(k)) throw Error("encode_png: text key '" + k + "' must be 1-79 printable ASCII characters");
  std::vector<::png_text> chunks(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    // Values are UTF-8: iTXt carries them as such (tEXt would mean Latin-1).
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(text[i].first.c_str());
    chunks[i].text = const_cast<char*>(text[i].second.c_str());
    chunks[i].itxt_length = text[i].second.size();
    chunks[i].lang = nullptr;
    chunks[i].lang_key = nullptr;
  }
  std::vector<png_bytep> rows(size_t(image.height));
  for (int64_t y = 0; y < image.height; ++y) rows[size_t(y)] = const_cast<uint8_t*>(image.at(0, y));
  PngWriter writer;
  encode_png_rows(image, chunks.data(), int(chunks.size()), rows.data(), writer);
  return std::move(writer.out);
}

void write_png(const std::string& path, const Image& image,
               const std::vector<std::pair<std::string, std::string>>& text) {
  write_file_atomic(path, encode_png(image, text));
}

std::vector<std::pair<std::string, std::string>> png_text(const std::string& bytes, const std::string& name) {
  if (image_format(bytes, name) != "png") throw file_error(name, "not a PNG file");
  check_png_chunks(bytes, name);
  PngState state;
  state.bytes = &bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_fail, png_warn);
  if (!png) throw file_error(name, "out of memory");
  png_infop info = png_create_info_struct(png);
  std::vector<std::pair<std::string, std::string>> out;
  if (setjmp(state.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw file_error(name, "corrupt PNG: " + state.message);
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, &state, png_read_bytes);
  png_read_info(png, info);
  png_textp chunks = nullptr;
  const int n = png_get_text(png, info, &chunks, nullptr);
  for (int i = 0; i < n; ++i) {
    const size_t length = chunks[i].compression >= PNG_ITXT_COMPRESSION_NONE ? chunks[i].itxt_length
                                                                             : chunks[i].text_length;
    out.emplace_back(chunks[i].key, std::string(chunks[i].text, length));
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

}  // namespace dt
