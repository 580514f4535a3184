// The one spelling of dtypes in configs and files: fp32, bf16, fp16 (and the long names float32,
// bfloat16, float16 as aliases), and of the storage of frozen weights (model.weight_dtype).
#pragma once
#include <initializer_list>
#include <string>

#include <c10/core/ScalarType.h>

namespace dt {

// The dtype `name` stands for, when it is one of `allowed`; otherwise dt::Error
// "<setting> '<name>' is not one of fp32, bf16" (listing `allowed`).
c10::ScalarType dtype_by_name(const std::string& name, const std::string& setting,
                              std::initializer_list<c10::ScalarType> allowed);
// "fp32", "bf16", "fp16".
std::string dtype_name(c10::ScalarType dtype);

// How the frozen Linear weights of a model's blocks are stored (nn/weights_8bit.h).
enum class WeightFormat {
  dense,  // the model's dtype
  int8,   // symmetric: s_o = max_i |W_oi| / 127, q = round(W / s_o) ∈ [−127, 127]
  fp8,    // E4M3 ("fn": finite, ±448 at most) as uint8 codes (LibTorch 1.13 has no float8 type): s_o = max_i |W_oi| / 448
};

// "" → dense, "int8", "fp8"; anything else is refused naming `setting` and the choices.
WeightFormat weight_format_by_name(const std::string& name, const std::string& setting);
std::string weight_format_name(WeightFormat format);

}  // namespace dt
