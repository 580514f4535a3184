#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"

namespace dt {
namespace {

TEST(Safetensors, RoundTripEveryDtype) {
  const std::string path = (std::filesystem::temp_directory_path() / "dt_roundtrip.safetensors").string();
  NamedTensors tensors;
  for (auto type : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
                    at::kChar, at::kByte})
    tensors.emplace_back(std::string("t_") + c10::toString(type), (torch::randn({3, 5}) * 10).to(type));
  tensors.emplace_back("mask", torch::randn({4}) > 0);
  tensors.emplace_back("empty", torch::zeros({0, 7}));
  tensors.emplace_back("scalar", torch::tensor(3.5));
  write_safetensors(path, tensors, {{"key", "value"}});
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("key"), "value");
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    at::Tensor r = file->get(name);
    EXPECT_EQ(r.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(r, t)) << name;
  }
  std::filesystem::remove(path);
}

TEST(Safetensors, TruncatedFileNamesTheFile) {
  std::string bytes = serialize_safetensors({{"w", torch::ones({4, 4})}});
  bytes.resize(bytes.size() - 3);
  try {
    SafetensorsFile::from_bytes(bytes, "cut.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dt
