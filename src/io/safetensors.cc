#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "core/error.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define DT_HAS_FLOAT8 1
#else
#define DT_HAS_FLOAT8 0
#endif

namespace dt {
namespace {

using json = nlohmann::json;

// Limits of the reference implementation (huggingface/safetensors): a header larger than this
// is refused before anything is allocated for it.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
// No real tensor has more dimensions; a hostile header could otherwise ask for millions.
constexpr size_t kMaxDims = 64;

struct DTypeEntry {
  const char* name;
  at::ScalarType type;  // the type the bytes are read as
  uint64_t size;
};

const DTypeEntry kDTypes[] = {
    {"F64", at::kDouble, 8},    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},      {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},       {"BOOL", at::kBool, 1},
#if DT_HAS_FLOAT8
    {"F8_E4M3", at::kFloat8_e4m3fn, 1}, {"F8_E5M2", at::kFloat8_e5m2, 1},
#else
    {"F8_E4M3", at::kByte, 1}, {"F8_E5M2", at::kByte, 1},  // decoded by decode_float8
#endif
};

const DTypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

// The live file mappings, start → size, for release_mapped_pages.
std::mutex mappings_mutex;
std::map<uintptr_t, uint64_t> live_mappings;

// float8 to float32 by formula (exact), for LibTorch builds without float8. E4M3 is the "fn"
// variant (no infinities, only S.1111.111 is NaN); E5M2 follows IEEE (infinities and NaNs).
float f8_to_float(uint8_t v, bool e4m3) {
  const int exp_bits = e4m3 ? 4 : 5, man_bits = e4m3 ? 3 : 2;
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int e = (v >> man_bits) & ((1 << exp_bits) - 1);
  const int m = v & ((1 << man_bits) - 1);
  float r;
  if (e4m3 && e == 15 && m == 7) r = std::numeric_limits<float>::quiet_NaN();
  else if (!e4m3 && e == 31) r = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) r = std::ldexp(static_cast<float>(m), 1 - bias - man_bits);
  else r = std::ldexp(1.0f + static_cast<float>(m) / (1 << man_bits), e - bias);
  return (v & 0x80) ? -r : r;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw file_error(path, "invalid safetensors file: " + what);
}

// A PyTorch checkpoint renamed to .safetensors: a zip archive or a bare pickle.
bool looks_like_pickle(const uint8_t* b, uint64_t size) {
  return (size >= 4 && std::memcmp(b, "PK\x03\x04", 4) == 0) || (size >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5);
}

// Parses the header, refusing duplicate keys at any depth (nlohmann would keep the last one).
json parse_header(const std::string& path, const char* text, uint64_t length) {
  std::vector<std::set<std::string>> open_objects;
  std::string entry, duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) open_objects.pop_back();
    if (event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (depth == 1) entry = key;
      if (!open_objects.back().insert(key).second && duplicate.empty())
        duplicate = depth == 1 ? "tensor " + quoted_name(key) + " appears twice in the header"
                               : "entry " + quoted_name(entry) + ": key " + quoted_name(key) + " appears twice";
    }
    return true;
  };
  if (length == 0 || text[0] != '{') fail(path, "header is not a JSON object (it must begin with '{')");
  json header = json::parse(text, text + length, on_event, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail(path, "header is not valid JSON");
  if (!duplicate.empty()) fail(path, duplicate);
  return header;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& entry, uint64_t data_size) {
  const std::string where = "tensor " + quoted_name(name) + ": ";
  if (!entry.is_object()) fail(path, where + "entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) fail(path, where + "missing '" + key + "'");
  const json& dtype = entry["dtype"];
  const json& shape = entry["shape"];
  const json& offsets = entry["data_offsets"];
  if (!dtype.is_string()) fail(path, where + "'dtype' must be a string");
  if (!shape.is_array()) fail(path, where + "'shape' must be an array of non-negative integers");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    fail(path, where + "'data_offsets' must be an array of two non-negative integers");
  TensorInfo info;
  info.name = name;
  info.dtype = dtype.get<std::string>();
  const DTypeEntry* type = dtype_by_name(info.dtype);
  if (!type) fail(path, where + "unknown dtype " + quoted_name(info.dtype));
  if (shape.size() > kMaxDims)
    fail(path, where + "shape has " + std::to_string(shape.size()) + " dimensions, more than " + std::to_string(kMaxDims));
  uint64_t bytes = type->size;
  bool overflow = false;
  for (const auto& d : shape) {
    if (!d.is_number_unsigned()) fail(path, where + "'shape' must be an array of non-negative integers");
    const uint64_t n = d.get<uint64_t>();
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
    else if (n != 0 && bytes > std::numeric_limits<uint64_t>::max() / n) overflow = true;
    else bytes *= n;
    info.shape.push_back(static_cast<int64_t>(n));
  }
  // A zero dimension makes any product empty, even one that overflowed before it.
  if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) bytes = 0, overflow = false;
  if (overflow) fail(path, where + "the shape's element count overflows");
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end)
    fail(path, where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] begin after they end");
  if (info.end > data_size)
    fail(path, where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                   ") run past the end of the data (" + std::to_string(data_size) + " bytes)");
  if (info.end - info.begin != bytes)
    fail(path, where + "shape and dtype need " + std::to_string(bytes) + " bytes but data_offsets give " +
                   std::to_string(info.end - info.begin));
  return info;
}

}  // namespace

const char* safetensors_dtype(at::ScalarType type) {
#if DT_HAS_FLOAT8
  if (type == at::kFloat8_e4m3fn) return "F8_E4M3";
  if (type == at::kFloat8_e5m2) return "F8_E5M2";
#endif
  for (const auto& e : kDTypes)
    if (e.type == type && std::strncmp(e.name, "F8", 2) != 0) return e.name;
  return nullptr;
}

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw file_error(path, "not a regular file");
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    fail(path, "the file has " + std::to_string(f->size_) + " bytes, fewer than the 8-byte header length");
  }
  // Private writable mapping: tensors handed out may be modified in memory (copy-on-write)
  // without touching the file.
  void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw file_error(path, std::string("cannot map: ") + std::strerror(errno));
  const uint64_t size = f->size_;
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    live_mappings[reinterpret_cast<uintptr_t>(p)] = size;
  }
  f->mapping_ = std::shared_ptr<void>(p, [size](void* q) {
    {
      std::lock_guard<std::mutex> lock(mappings_mutex);
      live_mappings.erase(reinterpret_cast<uintptr_t>(q));
    }
    ::munmap(q, size);
  });
  f->bytes_ = static_cast<const uint8_t*>(p);
  f->parse();
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::string bytes, const std::string& name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  auto owned = std::make_shared<std::string>(std::move(bytes));
  f->size_ = owned->size();
  if (f->size_ < 8) fail(name, "the file has " + std::to_string(f->size_) + " bytes, fewer than the 8-byte header length");
  f->bytes_ = reinterpret_cast<const uint8_t*>(owned->data());
  f->mapping_ = std::shared_ptr<void>(owned, owned.get());
  f->parse();
  return f;
}

void SafetensorsFile::parse() {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes_[i];
  if (header_len > kMaxHeaderBytes || header_len > size_ - 8) {
    if (looks_like_pickle(bytes_, size_))
      throw file_error(path_, "this is a PyTorch pickle checkpoint, not safetensors; pickle is not loaded "
                              "because unpickling can run arbitrary code");
    if (header_len > kMaxHeaderBytes)
      fail(path_, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
    fail(path_, "header length " + std::to_string(header_len) + " is larger than the rest of the file (" +
                    std::to_string(size_ - 8) + " bytes): truncated?");
  }
  data_start_ = 8 + header_len;
  const json header = parse_header(path_, reinterpret_cast<const char*>(bytes_ + 8), header_len);

  const uint64_t data_size = size_ - data_start_;
  for (const auto& [name, entry] : header.items()) {
    if (name != "__metadata__") {
      tensors_.push_back(parse_entry(path_, name, entry, data_size));
      continue;
    }
    if (!entry.is_object()) fail(path_, "__metadata__ is not an object of strings");
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) fail(path_, "__metadata__ value " + quoted_name(key) + " is not a string");
      metadata_[key] = value.get<std::string>();
    }
  }
  // The format requires the tensors to tile the data region: no overlap, no hole, nothing after.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (const auto& t : tensors_) {
    if (t.begin < covered) fail(path_, "tensor " + quoted_name(t.name) + " overlaps the tensor before it");
    if (t.begin > covered)
      fail(path_, "bytes [" + std::to_string(covered) + ", " + std::to_string(t.begin) + ") before tensor " +
                      quoted_name(t.name) + " belong to no tensor");
    covered = t.end;
  }
  if (covered != data_size)
    fail(path_, "the data region has " + std::to_string(data_size) + " bytes but the tensors cover " +
                    std::to_string(covered));
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::info_of(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) throw file_error(path_, "no tensor named " + quoted_name(name));
  return *info;
}

at::Tensor SafetensorsFile::mapped(const TensorInfo& info, at::ScalarType type, size_t element_size) const {
  void* ptr = const_cast<uint8_t*>(bytes_ + data_start_ + info.begin);
  const auto options = at::TensorOptions().dtype(type);
  if (reinterpret_cast<uintptr_t>(ptr) % element_size == 0) {
    auto keep = mapping_;
    return at::from_blob(ptr, info.shape, [keep](void*) {}, options);
  }
  at::Tensor t = at::empty(info.shape, options);
  if (info.end > info.begin) std::memcpy(t.data_ptr(), ptr, info.end - info.begin);
  return t;
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& info = info_of(name);
  const DTypeEntry* type = dtype_by_name(info.dtype);
  const at::Tensor t = mapped(info, type->type == at::kBool ? at::kByte : type->type, type->size);
  if (type->type == at::kBool) return t.ne(0);  // any non-zero byte is true; never an invalid bool
#if !DT_HAS_FLOAT8
  if (info.dtype == "F8_E4M3" || info.dtype == "F8_E5M2") return decode_float8(t, info.dtype == "F8_E4M3");
#endif
  return t;
}

at::Tensor SafetensorsFile::get_float8_codes(const std::string& name) const {
  const TensorInfo& info = info_of(name);
  if (info.dtype != "F8_E4M3" && info.dtype != "F8_E5M2")
    throw file_error(path_, "tensor " + quoted_name(name) + " is " + info.dtype + ", not float8");
  return mapped(info, at::kByte, 1);
}

at::Tensor decode_float8(const at::Tensor& codes, bool e4m3, at::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kBFloat16) return decode_float8(codes, e4m3, at::kFloat).to(dtype);
  // One table lookup per byte, in parallel (every float8 value is a bfloat16, so both tables are
  // exact): an index_select would first widen every code to an int64 index.
  const at::Tensor in = codes.contiguous();
  at::Tensor out = at::empty(in.sizes(), at::TensorOptions().dtype(dtype));
  const uint8_t* from = in.data_ptr<uint8_t>();
  const auto lookup = [&](auto* to) {
    using T = std::remove_pointer_t<decltype(to)>;
    T table[256];
    for (int v = 0; v < 256; ++v) table[v] = static_cast<T>(f8_to_float(static_cast<uint8_t>(v), e4m3));
    at::parallel_for(0, in.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) to[i] = table[from[i]];
    });
  };
  if (dtype == at::kFloat) lookup(out.data_ptr<float>());
  else lookup(out.data_ptr<at::BFloat16>());
  return out;
}

void release_mapped_pages(const at::Tensor& view) {
  if (!view.defined() || !view.device().is_cpu()) return;
  const auto begin = reinterpret_cast<uintptr_t>(view.data_ptr()), end = begin + view.nbytes();
  std::lock_guard<std::mutex> lock(mappings_mutex);
  auto it = live_mappings.upper_bound(begin);
  if (it == live_mappings.begin()) return;
  --it;
  if (end > it->first + it->second) return;  // not inside this mapping
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& info : file->tensors()) out[info.name] = file->get(info.name).clone();
  return out;
}

}  // namespace dt
