// The LoRA goldens of shared/golden/flux2_lora: every run of its cases.json (one LoRA in every file
// layout — split and fused q/k/v, BFL and diffusers names, kept, folded and metadata alphas — alone
// and with a second LoRA at strength 0.5) through the real FLUX.2 transformer; and the layouts
// deltatrain writes for FLUX.2 read back to the same delta.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "lora/file.h"
#include "models/flux2/weights.h"
#include "testing/families.h"
#include "testing/lora_golden.h"

namespace dt::lora {
namespace {

using dt::testing::golden_excess;

namespace fs = std::filesystem;
const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/";
const std::string kDir = kGolden + "flux2_lora/";
const std::string kWeights = kGolden + "flux2_transformer/weights";

at::Tensor run_case_a(flux2::Flux2Transformer& model) {
  auto io = SafetensorsFile::open(kGolden + "flux2_transformer/io.safetensors");
  torch::NoGradGuard no_grad;
  return model->forward(io->get("A.in.hidden_states"), io->get("A.in.encoder_hidden_states"), io->get("A.in.timestep"),
                        io->get("A.in.img_ids")[0], io->get("A.in.txt_ids")[0]);
}

flux2::Flux2Transformer load() { return flux2::load_transformer(kWeights, dt::testing::test_load_options()); }

const KeyMap& keys() { return dt::testing::key_map("flux2-klein"); }

TEST(Flux2LoraGolden, EveryCaseOfCasesJson) {
  const dt::testing::GoldenLoraCases cases = dt::testing::golden_lora_cases(kDir);
  auto expected = load_safetensors(kDir + "expected.safetensors");
  ASSERT_EQ(cases.runs.size(), 14u);
  for (const auto& run : cases.runs) {
    auto model = load();
    merge_lora_files(*model, keys(), run.files);
    at::Tensor want = expected.at(run.expected_prefix);
    EXPECT_LE(golden_excess(run_case_a(model), want, cases.atol, cases.rtol), 0) << run.label;
  }
}

// The check above can fail: no LoRA, or the second one at the wrong strength, is far outside.
TEST(Flux2LoraGolden, WrongStrengthIsCaught) {
  auto expected = load_safetensors(kDir + "expected.safetensors");
  auto plain = load();
  EXPECT_GT(golden_excess(run_case_a(plain), expected.at("one.A.out")), 0.1);
  auto model = load();
  merge_lora_files(*model, keys(), {{kDir + "lora.kohya.safetensors", 1.0}, {kDir + "second.peft.safetensors", 1.0}});
  EXPECT_GT(golden_excess(run_case_a(model), expected.at("two.A.out")), 0.05);
}

// Reading: the family is found from the keys alone, fused modules split exactly (block-diagonal
// image q/k/v compactly, dense text q/k/v as three full-rank copies), the final layer's halves kept.
TEST(Flux2LoraFiles, ReadWithoutModelFindsTheFamilyAndSplitsFusedModules) {
  LoraWeights kohya = read_lora(kDir + "lora.kohya.safetensors", dt::testing::all_key_maps());
  EXPECT_EQ(kohya.family, "flux2-klein");
  EXPECT_EQ(kohya.format, "kohya");
  LoraWeights reference = read_lora(kDir + "lora.onetrainer.safetensors", keys());
  ASSERT_EQ(kohya.modules.size(), reference.modules.size());
  for (const auto& m : reference.modules) {
    const LoraModule* k = kohya.find(m.name);
    ASSERT_TRUE(k) << m.name;
    EXPECT_LE((delta(*k) - delta(m)).abs().max().item<double>(), 1e-6) << m.name;
  }
  EXPECT_EQ(kohya.find("transformer_blocks.0.attn.to_q")->rank(), 4);       // block-diagonal: compact split
  EXPECT_EQ(kohya.find("transformer_blocks.0.attn.add_k_proj")->rank(), 4);  // dense: A shared by q, k, v
  EXPECT_DOUBLE_EQ(kohya.find("transformer_blocks.0.attn.add_k_proj")->scale(), 2.0);
}

// Every layout deltatrain writes reads back to the same delta; the tool layouts use BFL names with
// fused q/k/v (what ComfyUI, musubi-tuner and ai-toolkit load for FLUX.2), and the forward through
// a written file still matches the golden.
TEST(Flux2LoraFiles, WrittenLayoutsRoundTrip) {
  const fs::path dir = fs::temp_directory_path() / ("dt_flux2_lora_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto model = load();
  LoraWeights source = read_lora(kDir + "lora.peft.safetensors", keys(), model.get());
  const std::map<Format, std::string> example = {
      {Format::comfyui, "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"},
      {Format::comfyui_native, "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight"},
      {Format::kohya, "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"},
      {Format::original, "double_blocks.0.img_attn.qkv.lora_A.weight"},
      {Format::aitoolkit, "diffusion_model.single_blocks.1.linear1.lora_B.weight"},
      {Format::peft, "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"},
      {Format::onetrainer, "transformer.transformer_blocks.0.attn.add_v_proj.lora_up.weight"},
  };
  for (const auto& [format, key] : example) {
    const std::string path = (dir / (std::string(format_name(format)) + ".safetensors")).string();
    WriteOptions options;
    options.format = format;
    write_lora(path, source, keys(), options);
    EXPECT_TRUE(Checkpoint::open(path).contains(key)) << format_name(format) << ": " << key;
    LoraWeights back = read_lora(path, dt::testing::all_key_maps());
    EXPECT_EQ(back.family, "flux2-klein") << format_name(format);
    ASSERT_EQ(back.modules.size(), source.modules.size()) << format_name(format);
    for (const auto& m : source.modules)
      EXPECT_LE((delta(*back.find(m.name)) - delta(m)).abs().max().item<double>(), 1e-6) << format_name(format) << " " << m.name;
  }
  auto merged = load();
  merge_lora_files(*merged, keys(), {{(dir / "kohya.safetensors").string(), 1.0}});
  EXPECT_LE(golden_excess(run_case_a(merged), load_safetensors(kDir + "expected.safetensors").at("one.A.out")), 0);
  fs::remove_all(dir);
}

// The layers ComfyUI reaches only by BFL names travel twice in the diffusers-named layouts: once
// for diffusers, once as lora_unet_ + BFL name for ComfyUI. deltatrain reads such a file once per
// layer, and refuses it when the two copies disagree.
TEST(Flux2LoraFiles, DiffusersNamedFilesCarryComfyUICopiesReadOnce) {
  const fs::path dir = fs::temp_directory_path() / ("dt_flux2_copies_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  torch::manual_seed(3);
  LoraWeights lora;
  lora.modules = {{"double_stream_modulation_img.linear", torch::randn({2, 16}), torch::randn({24, 2}), 1.0},
                  {"transformer_blocks.0.attn.to_q", torch::randn({2, 16}), torch::randn({16, 2}), 1.0}};
  for (Format format : {Format::comfyui, Format::peft}) {
    const std::string path = (dir / (std::string(format_name(format)) + ".safetensors")).string();
    write_lora(path, lora, keys(), {.format = format});
    auto file = SafetensorsFile::open(path);
    EXPECT_TRUE(file->contains("transformer.double_stream_modulation_img.linear.lora_B.weight")) << format_name(format);
    EXPECT_TRUE(file->contains("lora_unet_double_stream_modulation_img_lin.lora_B.weight")) << format_name(format);
    EXPECT_FALSE(file->contains("lora_unet_transformer_blocks_0_attn_to_q.lora_B.weight")) << format_name(format);
    LoraWeights back = read_lora(path, keys());
    EXPECT_EQ(back.format, "peft");
    ASSERT_EQ(back.modules.size(), 2u);
    for (const auto& m : lora.modules)
      EXPECT_LE((delta(*back.find(m.name)) - delta(m)).abs().max().item<double>(), 1e-6) << m.name;
  }
  // A copy that disagrees with its layer is two adapters for one layer.
  const std::string path = (dir / "peft.safetensors").string();
  NamedTensors tensors;
  auto file = SafetensorsFile::open(path);
  for (const auto& info : file->tensors())
    tensors.emplace_back(info.name, info.name == "lora_unet_double_stream_modulation_img_lin.lora_B.weight" ? file->get(info.name) * 2
                                                                                                        : file->get(info.name));
  const std::string tampered = (dir / "tampered.safetensors").string();
  write_safetensors(tampered, tensors, file->metadata());
  EXPECT_THROW(
      {
        try {
          read_lora(tampered, keys());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("several adapters for one layer: double_stream_modulation_img.linear"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  fs::remove_all(dir);
}

// The command line itself: `forward --lora FILE --lora FILE:0.5`, and `inspect` names the family.
TEST(Flux2LoraGolden, ForwardAndInspectCommands) {
  const std::string out = (fs::temp_directory_path() / "dt_flux2_lora_forward.safetensors").string();
  const std::string cmd = std::string(DT_BINARY) + " forward --component flux2-transformer --model " + kWeights +
                          " --inputs " + kGolden + "flux2_transformer/io.safetensors --case A --output " + out + " --lora " +
                          kDir + "lora.comfyui.safetensors --lora " + kDir + "second.peft.safetensors:0.5";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_LE(golden_excess(load_safetensors(out).at("A.out"), load_safetensors(kDir + "expected.safetensors").at("two.A.out")), 0);
  const std::string listing = out + ".txt";
  ASSERT_EQ(std::system((std::string(DT_BINARY) + " inspect " + kDir + "lora.aitoolkit.safetensors > " + listing).c_str()), 0);
  std::ifstream in(listing);
  std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(text.find("fits flux2-klein"), std::string::npos) << text;
  fs::remove(out);
  fs::remove(listing);
}

}  // namespace
}  // namespace dt::lora
