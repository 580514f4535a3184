#include "core/dtype.h"

#include "core/error.h"
#include "core/listing.h"

namespace dt {

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "fp32";
    case c10::kBFloat16: return "bf16";
    case c10::kHalf: return "fp16";
    default: return c10::toString(dtype);
  }
}

c10::ScalarType dtype_by_name(const std::string& name, const std::string& setting,
                              std::initializer_list<c10::ScalarType> allowed) {
  std::vector<std::string> known;
  for (c10::ScalarType t : allowed) {
    const std::string long_name = t == c10::kFloat ? "float32" : t == c10::kBFloat16 ? "bfloat16" : "float16";
    if (name == dtype_name(t) || name == long_name) return t;
    known.push_back(dtype_name(t));
  }
  throw Error(setting + " '" + name + "' is not one of " + join(known));
}

WeightFormat weight_format_by_name(const std::string& name, const std::string& setting) {
  if (name.empty()) return WeightFormat::dense;
  if (name == "int8") return WeightFormat::int8;
  if (name == "fp8") return WeightFormat::fp8;
  throw Error(setting + " '" + name + "' is not one of: \"\" (the model's dtype), int8, fp8");
}

std::string weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::int8: return "int8";
    case WeightFormat::fp8: return "fp8";
    default: return "";
  }
}

}  // namespace dt
