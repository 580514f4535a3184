// float8 (E4M3) files for tests on any LibTorch: the 256 code values (decoded by the reader from
// tests/data/valid/f8.safetensors, whose decoding Safetensors.Float8UpcastMatchesKnownValues checks
// against the format's definition), nearest-code encoding, and a safetensors writer for raw bytes
// of any dtype name, since LibTorch 1.13 has no float8 type to write.
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace dt::testing {

// float32 value of every E4M3 code, [256] (codes 0x7F and 0xFF are NaN).
inline at::Tensor e4m3_values() {
  return SafetensorsFile::open(std::string(DT_SOURCE_DIR) + "/tests/data/valid/f8.safetensors")->get("e4m3").to(at::kFloat).clone();
}

// The E4M3 code nearest to each value of `x` (any shape; values beyond ±448 saturate), as uint8.
inline at::Tensor e4m3_encode(const at::Tensor& x) {
  const at::Tensor values = e4m3_values();
  const at::Tensor finite = values.isnan().logical_not().nonzero().flatten();  // the 254 finite codes
  const at::Tensor candidates = values.index_select(0, finite);
  const at::Tensor nearest = (x.to(at::kFloat).reshape({-1, 1}) - candidates.view({1, -1})).abs().argmin(1);
  return finite.index_select(0, nearest).to(at::kByte).view(x.sizes());
}

struct RawTensor {
  std::string name, dtype;  // dtype as the file names it: "F8_E4M3", "F32", ...
  at::Tensor bytes;         // the raw data: uint8 codes for F8, else a tensor of the matching type
};

// A safetensors file of `tensors` in the given order (packed, as the format requires), written atomically.
inline void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const RawTensor& t : tensors) {
    const at::Tensor c = t.bytes.contiguous().cpu();
    const size_t n = static_cast<size_t>(c.numel() * c.element_size()), begin = data.size();
    data.append(static_cast<const char*>(c.data_ptr()), n);
    header[t.name] = {{"dtype", t.dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {begin, begin + n}}};
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::string file(8, '\0');
  const uint64_t length = h.size();
  std::memcpy(file.data(), &length, 8);
  write_file_atomic(path, file + h + data);
}

// `tensors` written as ComfyUI writes a "scaled fp8" checkpoint: each matrix (2-D, and `quantised`
// says yes) as E4M3 codes with a per-tensor scale_weight that maps its largest magnitude to 448 and
// a scale_input of 1, every other tensor in float32, and the `marker` tensor (e.g.
// "model.diffusion_model.scaled_fp8").
template <class Keep>
void write_scaled_fp8(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::string& marker, Keep quantised) {
  std::vector<RawTensor> raw = {{marker, "F8_E4M3", at::empty({0}, at::kByte)}};
  for (const auto& [name, t] : tensors) {
    if (t.dim() != 2 || !quantised(name)) {
      raw.push_back({name, "F32", t.to(at::kFloat)});
      continue;
    }
    const at::Tensor scale = t.abs().max().to(at::kFloat) / 448.0f;
    raw.push_back({name, "F8_E4M3", e4m3_encode(t.to(at::kFloat) / scale)});
    const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
    raw.push_back({stem + ".scale_weight", "F32", scale});
    raw.push_back({stem + ".scale_input", "F32", at::ones({}, at::kFloat)});
  }
  write_raw_safetensors(path, raw);
}

}  // namespace dt::testing
