#include "train/tensorboard.h"

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace dt {
namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // Castagnoli, reflected
    t[i] = c;
  }
  return t;
}

// Protocol-buffer wire format pieces.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void tag(std::string& out, int field, int wire_type) { varint(out, static_cast<uint64_t>(field << 3 | wire_type)); }
void fixed(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }  // little-endian host
void bytes_field(std::string& out, int field, std::string_view s) {
  tag(out, field, 2);
  varint(out, s.size());
  out.append(s);
}
void double_field(std::string& out, int field, double v) {
  tag(out, field, 1);
  fixed(out, &v, 8);
}
void float_field(std::string& out, int field, float v) {
  tag(out, field, 5);
  fixed(out, &v, 4);
}
void int_field(std::string& out, int field, int64_t v) {
  tag(out, field, 0);
  varint(out, static_cast<uint64_t>(v));
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  static const auto table = crc32c_table();
  uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const double seconds = std::chrono::duration<double>(now).count();
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(seconds)) +
                                         ".deltatrain")).string();
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw file_error(path_, std::string("cannot write: ") + std::strerror(errno));
  std::string event;
  double_field(event, 1, seconds);
  bytes_field(event, 3, "brain.Event:2");
  record(event);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                                double wall_time) {
  std::string summary;
  for (const auto& [name, value] : values) {
    std::string v;
    bytes_field(v, 1, name);
    float_field(v, 2, static_cast<float>(value));
    bytes_field(summary, 1, v);
  }
  record_summary(step, summary, wall_time);
}

void TensorBoardWriter::image(int64_t step, const std::string& name, const std::string& png, int64_t width,
                              int64_t height, int channels, double wall_time) {
  std::string image;
  int_field(image, 1, height);
  int_field(image, 2, width);
  int_field(image, 3, channels);
  bytes_field(image, 4, png);
  std::string v;
  bytes_field(v, 1, name);
  bytes_field(v, 4, image);
  std::string summary;
  bytes_field(summary, 1, v);
  record_summary(step, summary, wall_time);
}

void TensorBoardWriter::record_summary(int64_t step, const std::string& summary, double wall_time) {
  std::string event;
  double_field(event, 1, wall_time);
  int_field(event, 2, step);
  bytes_field(event, 5, summary);
  record(event);
}

void TensorBoardWriter::record(const std::string& event) {
  std::string header;
  const uint64_t length = event.size();
  fixed(header, &length, 8);
  const uint32_t header_crc = masked_crc32c(header), data_crc = masked_crc32c(event);
  std::string out = header;
  fixed(out, &header_crc, 4);
  out += event;
  fixed(out, &data_crc, 4);
  if (std::fwrite(out.data(), 1, out.size(), file_) != out.size() || std::fflush(file_) != 0)
    throw file_error(path_, std::string("cannot write: ") + std::strerror(errno));
}

}  // namespace dt
