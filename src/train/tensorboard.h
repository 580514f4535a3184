// TensorBoard event files written without TensorFlow: TFRecord framing (length, masked CRC32C of
// the length, the record, masked CRC32C of the record) around hand-encoded `Event` protocol
// buffers (tensorflow/core/util/event.proto: wall_time = 1, step = 2, file_version = 3,
// summary = 5; Summary.value = 1; Value.tag = 1, Value.simple_value = 2, Value.image = 4;
// Image.height = 1, width = 2, colorspace = 3, encoded_image_string = 4).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dt {

uint32_t crc32c(std::string_view data);
// TFRecord's mask: rotate right by 15, add 0xa282ead8.
uint32_t masked_crc32c(std::string_view data);

class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<seconds>.deltatrain and writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One event holding a simple_value per (tag, value); flushed to disk.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time);
  // One event holding an image summary: encoded PNG bytes of `channels` (3 RGB, 4 RGBA) colour channels.
  void image(int64_t step, const std::string& tag, const std::string& png, int64_t width, int64_t height, int channels,
             double wall_time);
  const std::string& path() const { return path_; }

 private:
  void record_summary(int64_t step, const std::string& summary, double wall_time);  // an Event holding it
  void record(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace dt
