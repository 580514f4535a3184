// Writing safetensors: the header first (from shapes and dtypes alone), then one tensor at a time.
#include <algorithm>
#include <numeric>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace dt {
namespace {

// Index order of the data: largest element size first, so that every tensor starts aligned.
std::vector<size_t> data_order(const NamedTensors& tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  auto size = [&](size_t i) { return tensors[i].second.defined() ? tensors[i].second.element_size() : 0; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return size(a) > size(b); });
  return order;
}

// The 8-byte length and the JSON header, padded with spaces so that the data starts 8-aligned.
std::string header_bytes(const NamedTensors& tensors, const std::vector<size_t>& order,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, tensor] = tensors[i];
    if (name == "__metadata__") throw Error("'__metadata__' is reserved and cannot name a tensor");
    if (!names.insert(name).second) throw Error("tensor " + quoted_name(name) + " is given twice");
    if (!tensor.defined()) throw Error("tensor " + quoted_name(name) + " is undefined");
    const char* dtype = safetensors_dtype(tensor.scalar_type());
    if (!dtype)
      throw Error("tensor " + quoted_name(name) + ": dtype " + std::string(c10::toString(tensor.scalar_type())) +
                  " has no safetensors equivalent");
    const uint64_t n = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    header[name] = {{"dtype", dtype}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

// Streams the data region through `sink(data, size)`, holding at most one tensor's CPU copy.
template <typename Sink>
void write_data(const NamedTensors& tensors, const std::vector<size_t>& order, Sink&& sink) {
  for (size_t i : order) {
    const at::Tensor cpu = tensors[i].second.detach().to(at::kCPU).contiguous();
    if (cpu.numel() > 0) sink(cpu.data_ptr(), cpu.numel() * cpu.element_size());
  }
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const auto order = data_order(tensors);
  std::string head;
  try {
    head = header_bytes(tensors, order, metadata);
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  AtomicFile file(path);
  file.write(head);
  write_data(tensors, order, [&](const void* data, size_t size) { file.write(data, size); });
  file.commit();
}

std::string serialize_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  const auto order = data_order(tensors);
  std::string out = header_bytes(tensors, order, metadata);
  write_data(tensors, order, [&](const void* data, size_t size) { out.append(static_cast<const char*>(data), size); });
  return out;
}

}  // namespace dt
