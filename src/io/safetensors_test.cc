#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "testing/support.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

const std::string kData = std::string(DT_SOURCE_DIR) + "/tests/data/";

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("dt_st_" + std::to_string(::getpid()) + "_" + name)).string();
}

bool inside(const SafetensorsFile& file, const at::Tensor& t) {
  auto p = static_cast<const uint8_t*>(t.data_ptr());
  return p >= file.bytes() && p < file.bytes() + file.size();
}

NamedTensors every_dtype() {
  NamedTensors tensors;
  for (auto type : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort, at::kChar, at::kByte})
    tensors.emplace_back(std::string("t_") + c10::toString(type), (torch::randn({3, 5}) * 10).to(type));
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  tensors.emplace_back("f8_e4m3", torch::randn({7}).to(at::kFloat8_e4m3fn));
  tensors.emplace_back("f8_e5m2", torch::randn({7}).to(at::kFloat8_e5m2));
#endif
  tensors.emplace_back("mask", torch::randn({4}) > 0);
  tensors.emplace_back("empty", torch::zeros({0, 7}));
  tensors.emplace_back("scalar", torch::tensor(3.5));
  tensors.emplace_back("strided", torch::arange(12, torch::kInt).view({3, 4}).t());  // not contiguous
  return tensors;
}

TEST(Safetensors, RoundTripEveryDtypeAndMetadata) {
  const std::string path = temp_path("roundtrip.safetensors");
  const NamedTensors tensors = every_dtype();
  write_safetensors(path, tensors, {{"key", "value"}, {"json", "{\"a\": [1, 2]}"}});
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"key", "value"}, {"json", "{\"a\": [1, 2]}"}}));
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    at::Tensor r = file->get(name);
    EXPECT_EQ(r.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(r.sizes(), t.sizes()) << name;
    // Compared as bytes: float8 has no comparison operators on some builds.
    EXPECT_TRUE(torch::equal(r.contiguous().flatten().view(at::kByte), t.contiguous().flatten().view(at::kByte))) << name;
  }
  fs::remove(path);
}

TEST(Safetensors, WriterAlignsEveryTensorSoReadsAreViews) {
  const std::string path = temp_path("aligned.safetensors");
  NamedTensors tensors = {{"u8", torch::ones({3}, at::kByte)}, {"f64", torch::ones({5}, at::kDouble)},
                          {"f16", torch::ones({3}, at::kHalf)}, {"f32", torch::ones({2}, at::kFloat)}};
  write_safetensors(path, tensors);
  auto file = SafetensorsFile::open(path);
  for (const auto& [name, t] : tensors) EXPECT_TRUE(inside(*file, file->get(name))) << name;
  // Writing to a view changes memory only (private mapping), never the file.
  file->get("f32").fill_(7);
  EXPECT_TRUE(torch::equal(SafetensorsFile::open(path)->get("f32"), torch::ones({2})));
  fs::remove(path);
}

// Released pages of a view are dropped from memory (an in-memory write to them is gone: the bytes
// are the file's again), while heap memory and other tensors of the file keep their values.
TEST(Safetensors, ReleasedPagesReadTheFileAgainAndSpareOtherMemory) {
  const std::string path = temp_path("release.safetensors");
  const int64_t n = 3 * 4096;  // several pages of float32
  write_safetensors(path, {{"big", torch::arange(n, at::kFloat)}, {"small", torch::ones({4})}});
  auto file = SafetensorsFile::open(path);
  at::Tensor big = file->get("big"), small = file->get("small");
  big.fill_(-1);
  small.fill_(5);
  const at::Tensor heap = torch::full({n}, 3.0f);
  release_mapped_pages(big);
  release_mapped_pages(heap);  // not a mapping: left alone
  const at::Tensor whole_pages = big.slice(0, 1024, n - 1024);  // the pages 'big' covers entirely
  EXPECT_TRUE(torch::equal(whole_pages, torch::arange(1024, n - 1024, at::kFloat)));
  EXPECT_TRUE(torch::equal(small, torch::full({4}, 5.0f)));
  EXPECT_TRUE(torch::equal(heap, torch::full({n}, 3.0f)));
  fs::remove(path);
}

TEST(Safetensors, MisalignedTensorIsCopied) {
  auto file = SafetensorsFile::open(kData + "valid/misaligned.safetensors");
  at::Tensor w = file->get("w");
  EXPECT_FALSE(inside(*file, w));
  EXPECT_TRUE(torch::equal(w, torch::tensor({1.0f, 2.0f, 3.0f})));
}

// A file written by an independent writer (tests/data/make_safetensors_corpus.py).
TEST(Safetensors, ReadsKnownValuesOfEveryDtype) {
  auto file = SafetensorsFile::open(kData + "valid/every_dtype.safetensors");
  EXPECT_EQ(file->metadata().at("format"), "pt");
  auto expect = [&](const std::string& name, const at::Tensor& want) {
    at::Tensor got = file->get(name);
    EXPECT_EQ(got.scalar_type(), want.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(got, want)) << name << ": " << got;
  };
  expect("f64", torch::tensor({1.5, -2.25}, at::kDouble));
  expect("f32", torch::tensor({0.0f, 1.0f, -3.5f, 65504.0f}).view({2, 2}));
  expect("f16", torch::tensor({1.0f, -0.5f, 65504.0f}).to(at::kHalf));
  expect("bf16", torch::tensor({1.0f, -3.0f}).to(at::kBFloat16));
  expect("i64", torch::tensor({-(int64_t(1) << 62), int64_t(7)}, at::kLong));
  expect("i32", torch::tensor({-5, 1 << 30}, at::kInt));
  expect("i16", torch::tensor({-300, 300}, at::kInt).to(at::kShort));
  expect("i8", torch::tensor({-128, 127}, at::kInt).to(at::kChar));
  expect("u8", torch::tensor({0, 255}, at::kInt).to(at::kByte));
  expect("bool", torch::tensor({false, true, true}));
  expect("empty", torch::zeros({0, 3}));
  expect("scalar", torch::tensor(2.5f));
}

// Every byte value of both float8 formats, against values worked out from the format definitions
// (E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN; E5M2: bias 15, IEEE-like).
TEST(Safetensors, Float8UpcastMatchesKnownValues) {
  auto file = SafetensorsFile::open(kData + "valid/f8.safetensors");
  const at::Tensor e4m3 = file->get("e4m3").to(at::kFloat);
  const at::Tensor e5m2 = file->get("e5m2").to(at::kFloat).flatten();
  ASSERT_EQ(e4m3.numel(), 256);
  ASSERT_EQ(e5m2.numel(), 256);
  auto a = e4m3.accessor<float, 1>();
  auto b = e5m2.accessor<float, 1>();
  const std::vector<std::pair<int, float>> e4m3_known = {
      {0x00, 0.0f}, {0x01, std::ldexp(1.0f, -9)}, {0x07, 7 * std::ldexp(1.0f, -9)}, {0x08, std::ldexp(1.0f, -6)},
      {0x38, 1.0f}, {0x3F, 1.875f}, {0x40, 2.0f}, {0x7E, 448.0f}, {0xB8, -1.0f}, {0xFE, -448.0f}};
  for (auto [byte, value] : e4m3_known) EXPECT_EQ(a[byte], value) << "E4M3 byte " << byte;
  EXPECT_TRUE(std::signbit(a[0x80]) && a[0x80] == 0.0f);
  EXPECT_TRUE(std::isnan(a[0x7F]) && std::isnan(a[0xFF]));
  const std::vector<std::pair<int, float>> e5m2_known = {
      {0x00, 0.0f}, {0x01, std::ldexp(1.0f, -16)}, {0x04, std::ldexp(1.0f, -14)}, {0x3C, 1.0f}, {0x3D, 1.25f},
      {0x7B, 57344.0f}, {0xBC, -1.0f}, {0xFB, -57344.0f}};
  for (auto [byte, value] : e5m2_known) EXPECT_EQ(b[byte], value) << "E5M2 byte " << byte;
  EXPECT_TRUE(std::isinf(b[0x7C]) && b[0x7C] > 0 && std::isinf(b[0xFC]) && b[0xFC] < 0);
  for (int byte : {0x7D, 0x7E, 0x7F, 0xFF}) EXPECT_TRUE(std::isnan(b[byte])) << "E5M2 byte " << byte;
  // Between the special values the codes are monotonic: a check on every other byte.
  for (int v = 1; v < 0x7F; ++v) EXPECT_LT(a[v - 1], a[v]) << "E4M3 byte " << v;
  for (int v = 1; v < 0x7C; ++v) EXPECT_LT(b[v - 1], b[v]) << "E5M2 byte " << v;
}

// Each file of tests/data/hostile/ with the text its error must contain (expected.tsv).
TEST(Safetensors, HostileCorpusGivesOneLineErrorsNamingFileAndProblem) {
  std::ifstream list(kData + "hostile/expected.tsv");
  std::string line;
  int cases = 0;
  while (std::getline(list, line)) {
    const auto tab = line.find('\t');
    const std::string path = kData + "hostile/" + line.substr(0, tab), expected = line.substr(tab + 1);
    const std::string message = dt::testing::error_of([&] { Checkpoint::open(path); });
    EXPECT_NE(message.find(path + ": "), std::string::npos) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << "expected '" << expected << "' in: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    ++cases;
  }
  EXPECT_GE(cases, 40);
}

TEST(Safetensors, EveryTruncationIsRefused) {
  const std::string bytes = serialize_safetensors(every_dtype(), {{"k", "v"}});
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string message = dt::testing::error_of([&] { SafetensorsFile::from_bytes(bytes.substr(0, n), "cut.safetensors"); });
    EXPECT_EQ(message.rfind("cut.safetensors: ", 0), 0u) << n << ": " << message;
  }
  EXPECT_EQ(SafetensorsFile::from_bytes(bytes, "whole")->tensors().size(), every_dtype().size());
}

TEST(Safetensors, WriterErrorsNameFileAndTensorAndKeepTheOldFile) {
  const std::string path = temp_path("keep.safetensors");
  write_safetensors(path, {{"old", torch::ones({2})}});
  const std::string before = read_file(path);
  std::string message = dt::testing::error_of([&] { write_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}); });
  EXPECT_EQ(message, path + ": tensor 'a' is given twice");
  message = dt::testing::error_of([&] { write_safetensors(path, {{"c", torch::ones({1}, at::kComplexFloat)}}); });
  EXPECT_NE(message.find("tensor 'c': dtype"), std::string::npos) << message;
  message = dt::testing::error_of([&] { write_safetensors(path, {{"__metadata__", torch::ones({1})}}); });
  EXPECT_NE(message.find("reserved"), std::string::npos) << message;
  EXPECT_EQ(read_file(path), before);
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(entry.path().string().find(path + ".tmp"), std::string::npos) << "left behind: " << entry.path();
  fs::remove(path);
}

TEST(Safetensors, GetOfUnknownNameNamesFileAndTensor) {
  auto file = SafetensorsFile::from_bytes(serialize_safetensors({{"w", torch::ones({1})}}), "m.safetensors");
  EXPECT_EQ(dt::testing::error_of([&] { file->get("v"); }), "m.safetensors: no tensor named 'v'");
}

}  // namespace
}  // namespace dt
