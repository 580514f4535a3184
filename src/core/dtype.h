// The one spelling of dtypes in configs and files: fp32, bf16, fp16 (and the long names float32,
// bfloat16, float16 as aliases).
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

}  // namespace dt
