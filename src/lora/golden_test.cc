// The LoRA goldens of shared/golden/zimage_lora: every run of its cases.json (one LoRA in every
// file layout, alone and with a second LoRA at strength 0.5) through the real Z-Image transformer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "lora/file.h"
#include "models/zimage/weights.h"
#include "testing/families.h"

namespace dt::lora {
namespace {

const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/";
const std::string kDir = kGolden + "zimage_lora/";

// max|c − g| ≤ atol + rtol·max|g| (golden/README.md).
double excess(const at::Tensor& c, const at::Tensor& g, double atol = 1e-4, double rtol = 1e-4) {
  return (c - g).abs().max().item<double>() - (atol + rtol * g.abs().max().item<double>());
}

at::Tensor run_case_a(zimage::ZImageTransformer& model) {
  auto io = SafetensorsFile::open(kGolden + "zimage_transformer/io.safetensors");
  torch::NoGradGuard no_grad;
  return model->forward({io->get("A.in.x.0").to(at::kFloat)}, io->get("A.in.t").to(at::kFloat),
                        {io->get("A.in.cap_feats.0").to(at::kFloat)})[0];
}

zimage::ZImageTransformer load() { return zimage::load_transformer(kGolden + "zimage_transformer/weights", LoadOptions{}); }

TEST(LoraGolden, EveryCaseOfCasesJson) {
  std::ifstream in(kDir + "cases.json");
  ASSERT_TRUE(in) << kDir << "cases.json";
  auto cases = nlohmann::json::parse(in);
  auto expected = load_safetensors(kDir + "expected.safetensors");
  ASSERT_EQ(cases["runs"].size(), 18u);
  for (const auto& run : cases["runs"]) {
    std::vector<std::pair<std::string, double>> files;
    std::string label;
    for (const auto& l : run["lora"]) {
      files.emplace_back(kDir + l[0].get<std::string>(), l[1].get<double>());
      label += l[0].get<std::string>() + ":" + std::to_string(l[1].get<double>()) + " ";
    }
    auto model = load();
    merge_lora_files(*model, dt::testing::key_map("zimage"), files);
    at::Tensor want = expected.at(run["expected_prefix"].get<std::string>() + ".0");
    EXPECT_LE(excess(run_case_a(model), want, cases["atol"], cases["rtol"]), 0) << label;
  }
}

// The check above can fail: a wrong strength or no LoRA is far outside the tolerance.
TEST(LoraGolden, WrongStrengthIsCaught) {
  auto expected = load_safetensors(kDir + "expected.safetensors");
  auto plain = load();
  EXPECT_GT(excess(run_case_a(plain), expected.at("one.A.out.0")), 0.1);
  auto model = load();
  merge_lora_files(*model, dt::testing::key_map("zimage"), {{kDir + "lora.kohya.safetensors", 1.0}, {kDir + "second.peft.safetensors", 1.0}});
  EXPECT_GT(excess(run_case_a(model), expected.at("two.A.out.0")), 0.05);
}

// The command line itself: `forward --lora FILE --lora FILE:0.5`.
TEST(LoraGolden, ForwardCommandWithStrengths) {
  const std::string out = (std::filesystem::temp_directory_path() / "dt_lora_forward.safetensors").string();
  const std::string cmd = std::string(DT_BINARY) + " forward --component zimage-transformer --model " + kGolden +
                          "zimage_transformer/weights --inputs " + kGolden + "zimage_transformer/io.safetensors --case A --output " +
                          out + " --lora " + kDir + "lora.comfyui-fused.safetensors --lora " + kDir + "second.peft.safetensors:0.5";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto got = load_safetensors(out);
  auto expected = load_safetensors(kDir + "expected.safetensors");
  EXPECT_LE(excess(got.at("A.out.0"), expected.at("two.A.out.0")), 0);
  std::filesystem::remove(out);
}

}  // namespace
}  // namespace dt::lora
