// libFuzzer target over the safetensors reader: any bytes give either a valid file whose tensors
// can all be read, or a dt::Error; never a crash, a hang or a read outside the buffer.
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = dt::SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& info : file->tensors()) {
      const at::Tensor t = file->get(info.name);
      // Read every byte here, in instrumented code, so that a view past the buffer is reported.
      const auto* p = static_cast<const uint8_t*>(t.data_ptr());
      volatile uint8_t sum = 0;
      for (int64_t i = 0; i < t.numel() * static_cast<int64_t>(t.element_size()); ++i) sum = sum + p[i];
    }
  } catch (const dt::Error&) {
  }
  return 0;
}
