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
#include "testing/lora_golden.h"

namespace dt::lora {
namespace {

using dt::testing::golden_excess;

const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/";
const std::string kDir = kGolden + "zimage_lora/";

at::Tensor run_case_a(zimage::ZImageTransformer& model) {
  auto io = SafetensorsFile::open(kGolden + "zimage_transformer/io.safetensors");
  torch::NoGradGuard no_grad;
  return model->forward({io->get("A.in.x.0").to(at::kFloat)}, io->get("A.in.t").to(at::kFloat),
                        {io->get("A.in.cap_feats.0").to(at::kFloat)})[0];
}

zimage::ZImageTransformer load() { return zimage::load_transformer(kGolden + "zimage_transformer/weights", dt::testing::test_load_options()); }

TEST(LoraGolden, EveryCaseOfCasesJson) {
  const dt::testing::GoldenLoraCases cases = dt::testing::golden_lora_cases(kDir);
  auto expected = load_safetensors(kDir + "expected.safetensors");
  ASSERT_EQ(cases.runs.size(), 18u);
  for (const auto& run : cases.runs) {
    auto model = load();
    merge_lora_files(*model, dt::testing::key_map("zimage"), run.files);
    at::Tensor want = expected.at(run.expected_prefix + ".0");
    EXPECT_LE(golden_excess(run_case_a(model), want, cases.atol, cases.rtol), 0) << run.label;
  }
}

// The check above can fail: a wrong strength or no LoRA is far outside the tolerance.
TEST(LoraGolden, WrongStrengthIsCaught) {
  auto expected = load_safetensors(kDir + "expected.safetensors");
  auto plain = load();
  EXPECT_GT(golden_excess(run_case_a(plain), expected.at("one.A.out.0")), 0.1);
  auto model = load();
  merge_lora_files(*model, dt::testing::key_map("zimage"), {{kDir + "lora.kohya.safetensors", 1.0}, {kDir + "second.peft.safetensors", 1.0}});
  EXPECT_GT(golden_excess(run_case_a(model), expected.at("two.A.out.0")), 0.05);
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
  EXPECT_LE(golden_excess(got.at("A.out.0"), expected.at("two.A.out.0")), 0);
  std::filesystem::remove(out);
}

}  // namespace
}  // namespace dt::lora
