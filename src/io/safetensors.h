// The safetensors format: an 8-byte little-endian header length, a JSON header, then the data.
// https://github.com/huggingface/safetensors (format section). Reading memory-maps the file and
// hands tensors to LibTorch without a copy where dtype and alignment allow.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace dt {

struct TensorInfo {
  std::string name;
  std::string dtype;  // as in the file: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data region
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws dt::Error naming the file (and tensor).
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Same validation over bytes held in memory; `name` stands for the path in errors.
  static std::shared_ptr<SafetensorsFile> from_bytes(std::string bytes, const std::string& name);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // The whole file as mapped (header included): for hashing, and to tell a view from a copy.
  const uint8_t* bytes() const { return bytes_; }
  uint64_t size() const { return size_; }

  // The tensor, on the CPU, in its file dtype (F8 types upcast to float32 when this LibTorch has
  // no float8; BOOL always a copy). A view into the mapping, without a copy, when its bytes are
  // aligned to the element size, else a copy; the mapping stays alive while any returned tensor
  // does. Writes to a returned tensor never reach the file.
  at::Tensor get(const std::string& name) const;
  // The bytes of a float8 tensor (F8_E4M3 or F8_E5M2) as uint8 codes of its shape, undecoded, on
  // the same terms as get(); throws dt::Error naming the file and tensor for any other dtype.
  at::Tensor get_float8_codes(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void parse();
  const TensorInfo& info_of(const std::string& name) const;  // throws naming the file and tensor
  at::Tensor mapped(const TensorInfo& info, at::ScalarType type, size_t element_size) const;

  std::string path_;
  std::shared_ptr<void> mapping_;  // owns the bytes
  const uint8_t* bytes_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The safetensors name of a LibTorch dtype ("F32", "BF16", ...), or nullptr when it has none.
const char* safetensors_dtype(at::ScalarType type);

// Writes tensors (any device, any layout) with string metadata, atomically (temporary file, fsync,
// rename). Streams: one tensor at a time is brought to the CPU, so no second copy of all of them
// is ever held. Names must be unique. Data is ordered by element size, largest first, so every
// tensor is aligned for a zero-copy read. Throws dt::Error naming the file (and tensor).
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The serialized bytes write_safetensors would write.
std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Gives back the memory pages of a tensor that get() returned as a view into a file's mapping, once
// its owner has replaced it (a weight stored in 8 bits): the pages it covers entirely are dropped
// from the process (madvise MADV_DONTNEED), so the file does not stay resident. A later read of
// those bytes reads the file again. Memory that is not inside a live mapping is left alone.
void release_mapped_pages(const at::Tensor& view);

// The values of float8 codes (uint8, any shape) in `dtype`, exact in float32 and bfloat16: E4M3 is
// the "fn" variant (no infinities; S.1111.111 is NaN), E5M2 follows IEEE.
at::Tensor decode_float8(const at::Tensor& codes, bool e4m3, at::ScalarType dtype = at::kFloat);

// Convenience: every tensor of a file, copied out of the mapping.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

}  // namespace dt
