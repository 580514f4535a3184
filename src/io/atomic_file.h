// Files that appear under their final name complete or not at all: data goes to a temporary file
// in the same folder, is flushed to disk, then renamed over the target.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dt {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates the temporary file; throws dt::Error
  ~AtomicFile();                          // removes the temporary file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);  // throws dt::Error naming the file (disk full, ...)
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();  // fsync, rename to the final name, fsync the folder

  const std::string& path() const { return path_; }

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, std::string_view content);

// All `size` bytes to / from an open descriptor (interrupted calls retried); dt::Error naming `path`
// on failure, disk full or a short file.
void write_all(int fd, const void* data, size_t size, const std::string& path);
void read_all_at(int fd, void* data, size_t size, uint64_t offset, const std::string& path);

// Reads a whole file; throws dt::Error naming the file.
std::string read_file(const std::string& path);

}  // namespace dt
