#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#include "core/error.h"
#include "io/atomic_file.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define DT_HAS_FLOAT8 1
#else
#define DT_HAS_FLOAT8 0
#endif

namespace dt {
namespace {

using json = nlohmann::json;

// A header larger than this is refused before anything is allocated for it.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  const char* name;
  at::ScalarType type;  // the type the tensor is stored as in memory
  int size;
};

const DTypeEntry kDTypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4},     {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8},   {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},  {"I8", at::kChar, 1},       {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
#if DT_HAS_FLOAT8
    {"F8_E4M3", at::kFloat8_e4m3fn, 1}, {"F8_E5M2", at::kFloat8_e5m2, 1},
#else
    {"F8_E4M3", at::kByte, 1}, {"F8_E5M2", at::kByte, 1},
#endif
};

const DTypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

const char* dtype_name(at::ScalarType t) {
  for (const auto& e : kDTypes)
    if (e.type == t && std::strncmp(e.name, "F8", 2) != 0) return e.name;
#if DT_HAS_FLOAT8
  if (t == at::kFloat8_e4m3fn) return "F8_E4M3";
  if (t == at::kFloat8_e5m2) return "F8_E5M2";
#endif
  return nullptr;
}

// float8 to float32 by formula (exact): used where LibTorch has no float8 type.
float f8_to_float(uint8_t v, int exp_bits, int man_bits, bool e4m3fn) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int sign = v >> 7;
  const int e = (v >> man_bits) & ((1 << exp_bits) - 1);
  const int m = v & ((1 << man_bits) - 1);
  float r;
  if (e4m3fn && e == 15 && m == 7) {
    r = std::numeric_limits<float>::quiet_NaN();
  } else if (!e4m3fn && e == 31) {
    r = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    r = std::ldexp(static_cast<float>(m), 1 - bias - man_bits);
  } else {
    r = std::ldexp(1.0f + static_cast<float>(m) / (1 << man_bits), e - bias);
  }
  return sign ? -r : r;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw file_error(path, "invalid safetensors file: " + what);
}

}  // namespace

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw file_error(path, "not a regular file");
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(f->size_) + " bytes, shorter than the 8-byte header length");
  }
  // Private writable mapping: tensors handed out may be modified in memory (copy-on-write)
  // without touching the file.
  void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw file_error(path, std::string("cannot map: ") + std::strerror(errno));
  const uint64_t size = f->size_;
  f->mapping_ = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  f->bytes_ = static_cast<const uint8_t*>(p);
  f->parse();
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::string bytes, const std::string& name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  auto owned = std::make_shared<std::string>(std::move(bytes));
  f->size_ = owned->size();
  if (f->size_ < 8) fail(name, "file is " + std::to_string(f->size_) + " bytes, shorter than the 8-byte header length");
  f->bytes_ = reinterpret_cast<const uint8_t*>(owned->data());
  f->mapping_ = std::shared_ptr<void>(owned, owned.get());
  f->parse();
  return f;
}

void SafetensorsFile::parse() {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes_[i];
  if (header_len > kMaxHeaderBytes)
    fail(path_, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                    std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len > size_ - 8)
    fail(path_, "header length " + std::to_string(header_len) + " is larger than the file (" +
                    std::to_string(size_) + " bytes): truncated?");
  data_start_ = 8 + header_len;
  const char* text = reinterpret_cast<const char*>(bytes_ + 8);

  // nlohmann keeps the last of duplicate keys silently: catch them while parsing.
  std::string duplicate;
  std::set<std::string> seen;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header = json::parse(text, text + header_len, on_event, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail(path_, "header is not valid JSON");
  if (!header.is_object()) fail(path_, "header is not a JSON object");
  if (!duplicate.empty()) fail(path_, "tensor '" + duplicate + "' appears twice in the header");

  const uint64_t data_size = size_ - data_start_;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path_, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) fail(path_, "__metadata__ value '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) fail(path_, where + "entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail(path_, where + "missing or non-string 'dtype'");
    if (shape_it == entry.end() || !shape_it->is_array()) fail(path_, where + "missing or non-array 'shape'");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
      fail(path_, where + "'data_offsets' must be an array of two integers");
    TensorInfo info;
    info.name = name;
    info.dtype = dtype_it->get<std::string>();
    const DTypeEntry* dt = dtype_by_name(info.dtype);
    if (!dt) fail(path_, where + "unknown dtype '" + info.dtype + "'");
    uint64_t elements = 1;
    bool overflow = false;
    for (const auto& d : *shape_it) {
      if (!d.is_number_unsigned()) fail(path_, where + "shape entries must be non-negative integers");
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
      if (v != 0 && elements > std::numeric_limits<uint64_t>::max() / v) overflow = true;
      elements *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    if (overflow || elements > std::numeric_limits<uint64_t>::max() / dt->size)
      fail(path_, where + "shape product overflows");
    for (const auto& o : *offsets_it)
      if (!o.is_number_unsigned()) fail(path_, where + "'data_offsets' must be non-negative integers");
    info.begin = (*offsets_it)[0].get<uint64_t>();
    info.end = (*offsets_it)[1].get<uint64_t>();
    if (info.begin > info.end) fail(path_, where + "data_offsets begin after they end");
    if (info.end > data_size)
      fail(path_, where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                      ") run past the end of the data (" + std::to_string(data_size) + " bytes)");
    if (info.end - info.begin != elements * dt->size)
      fail(path_, where + "shape and dtype need " + std::to_string(elements * dt->size) +
                      " bytes but data_offsets give " + std::to_string(info.end - info.begin));
    tensors_.push_back(std::move(info));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& t : tensors_) {
    if (t.begin < expected) fail(path_, "tensor '" + t.name + "' overlaps the tensor before it");
    if (t.begin > expected)
      fail(path_, "bytes [" + std::to_string(expected) + ", " + std::to_string(t.begin) +
                      ") before tensor '" + t.name + "' belong to no tensor");
    expected = t.end;
  }
  if (expected != data_size)
    fail(path_, "the data region has " + std::to_string(data_size) + " bytes but the tensors cover " +
                    std::to_string(expected));
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) throw file_error(path_, "no tensor named '" + name + "'");
  const DTypeEntry* dt = dtype_by_name(info->dtype);
  void* ptr = const_cast<uint8_t*>(bytes_ + data_start_ + info->begin);
  auto options = at::TensorOptions().dtype(dt->type == at::kBool ? at::kByte : dt->type);
  auto keep = mapping_;
  at::Tensor t;
  if (reinterpret_cast<uintptr_t>(ptr) % dt->size == 0 && info->end > info->begin) {
    t = torch::from_blob(ptr, info->shape, [keep](void*) {}, options);
  } else {
    t = torch::empty(info->shape, options);
    if (info->end > info->begin) std::memcpy(t.data_ptr(), ptr, info->end - info->begin);
  }
  if (dt->type == at::kBool) return t.ne(0);  // any non-zero byte is true; never an invalid bool
#if !DT_HAS_FLOAT8
  if (info->dtype == "F8_E4M3" || info->dtype == "F8_E5M2") {
    const bool e4m3 = info->dtype == "F8_E4M3";
    float table[256];
    for (int v = 0; v < 256; ++v) table[v] = f8_to_float(static_cast<uint8_t>(v), e4m3 ? 4 : 5, e4m3 ? 3 : 2, e4m3);
    auto lut = torch::from_blob(table, {256}, at::kFloat).clone();
    return lut.index({t.to(at::kLong)});
  }
#endif
  return t;
}

std::string serialize_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || !names.insert(name).second)
      throw Error("cannot write tensor name '" + name + "' twice (or a reserved name)");
    const char* dtype = dtype_name(tensor.scalar_type());
    if (!dtype) throw Error("tensor '" + name + "': dtype " + std::string(c10::toString(tensor.scalar_type())) +
                            " has no safetensors equivalent");
    at::Tensor c = tensor.detach().to(at::kCPU).contiguous();
    if (c.scalar_type() == at::kBool) c = c.to(at::kByte);
    const uint64_t n = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(c);
  }
  std::string head = header.dump();
  head.append((8 - head.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + head.size() + offset);
  const uint64_t len = head.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += head;
  for (const auto& c : data) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return out;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  try {
    bytes = serialize_safetensors(tensors, metadata);
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  write_file_atomic(path, bytes);
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& info : file->tensors()) out[info.name] = file->get(info.name).clone();
  return out;
}

}  // namespace dt
