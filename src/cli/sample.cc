// deltatrain sample --model PIPELINE --prompt TEXT [--prompt ...] [--lora FILE[:STRENGTH] ...]
//   [--negative TEXT] [--steps N] [--guidance G] [--seed S] [--width W] [--height H] [--out DIR]
#include <CLI/CLI.hpp>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "run/train_run.h"
#include "sample/generate.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

// A OneTrainer samples.json, or a text file with one prompt per line.
std::vector<SamplePrompt> prompts_file(const std::string& path, const SamplePrompt& defaults) {
  if (fs::path(path).extension() == ".json") return read_onetrainer_samples(path);
  std::vector<SamplePrompt> out;
  std::istringstream lines(read_file(path));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    SamplePrompt p = defaults;
    p.prompt = line;
    p.seed = defaults.seed + out.size();
    out.push_back(p);
  }
  return out;
}

}  // namespace

int run_sample(int argc, char** argv) {
  CLI::App app("Generate images from prompts with a model (+ LoRA files): flow-matching Euler, the family's schedule "
               "and CFG; PNGs carry their parameters; a grid when there are several.", argv[0]);
  ModelConfig model;
  model.dtype = "";
  std::string variant = "auto", prompts_path, out = "samples";
  std::vector<std::string> prompt_texts, lora_args;
  SamplePrompt defaults;
  defaults.seed = 42;
  defaults.width = defaults.height = 1024;
  double guidance = -1;
  app.add_option("--model", model.base, "pipeline folder (transformer/, text_encoder/, tokenizer/, vae/) or transformer checkpoint")->required();
  app.add_option("--family", model.family, "model family; empty = detected from the weights");
  app.add_option("--text-encoder", model.text_encoder, "pipeline folder to take the text encoder and tokenizer from; empty = --model");
  app.add_option("--vae", model.vae, "pipeline folder or VAE checkpoint; empty = --model");
  app.add_option("--variant", variant, "auto, base (many steps with CFG) or distilled / turbo (few steps, no CFG): the defaults of --steps and --guidance");
  app.add_option("--prompt", prompt_texts, "a prompt (repeatable); prompt i uses seed + i");
  app.add_option("--prompts", prompts_path, "more prompts: a OneTrainer samples.json or a text file with one prompt per line");
  app.add_option("--negative", defaults.negative_prompt, "negative prompt (used when CFG runs)");
  app.add_option("--steps", defaults.steps, "sampling steps; 0 = the variant default");
  app.add_option("--guidance", guidance, "guidance in the family's convention (Z-Image g, CFG iff g > 0; FLUX.2 w, CFG iff w > 1); default: the variant's");
  app.add_option("--seed", defaults.seed, "seed of the first prompt's noise (generated on the CPU: the same image on any device)");
  app.add_option("--width", defaults.width, "image width in pixels");
  app.add_option("--height", defaults.height, "image height in pixels");
  app.add_option("--lora", lora_args, "LoRA file, optionally with a strength: FILE or FILE:STRENGTH (repeatable)");
  app.add_option("--out", out, "output folder");
  app.add_option("--device", model.device, "cpu, cuda or cuda:N");
  app.add_option("--dtype", model.dtype, "fp32 or bf16; default bf16 on CUDA, fp32 on the CPU");
  app.add_option("--offload-blocks", model.offload_blocks, "keep this many transformer blocks in host memory, copied to the GPU per use (model.offload_blocks)");
  app.add_option("--weight-dtype", model.weight_dtype, "int8 or fp8: store the transformer blocks' weights in 8 bits, LoRAs merged first (model.weight_dtype)");
  bool no_warm_up = false;
  app.add_flag("--no-warm-up", no_warm_up, "skip the warm-up: one forward of the largest prompt, nothing kept, before the first step (its memory taken and checked up front, so that the first step runs at full speed; costs one forward)");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  if (model.dtype.empty()) model.dtype = model.device == "cpu" ? "fp32" : "bf16";
  const Family& family = model.family.empty() ? detect_family(model.base) : family_by_name(model.family);
  std::string why;
  const Variant v = variant_by_name(variant, family, model.base, &why);
  std::cout << family.name() << " " << (v == Variant::base ? "Base" : "distilled") << " model"
            << (why.empty() ? "" : " (" + why + ")") << "\n";

  std::vector<SamplePrompt> prompts;
  for (const std::string& text : prompt_texts) {
    SamplePrompt p = defaults;
    p.prompt = text;
    p.seed = defaults.seed + prompts.size();
    prompts.push_back(p);
  }
  if (!prompts_path.empty())
    for (SamplePrompt p : prompts_file(prompts_path, defaults)) prompts.push_back(p);
  if (prompts.empty()) throw Error("no prompts: give --prompt TEXT or --prompts FILE");
  for (SamplePrompt& p : prompts) p = resolve(p, family, v, defaults.steps, guidance);

  std::vector<LoraFile> loras;
  for (const std::string& a : lora_args) loras.push_back(parse_lora_file(a));
  for (const LoraFile& l : loras)
    if (!fs::is_regular_file(l.path)) throw file_error(l.path, "no such LoRA file");

  SamplingModels models;
  models.family = &family;
  models.transformer = model.base;
  models.text_encoder = model.text_encoder.empty() ? model.base : model.text_encoder;
  models.vae = model.vae.empty() ? model.base : model.vae;
  models.options = load_options(model);
  models.offload_blocks = model.offload_blocks;
  models.weight_format = weight_format(model);
  const std::vector<Image> images = generate(models, loras, prompts, !no_warm_up);
  fs::create_directories(out);

  for (size_t i = 0; i < images.size(); ++i) {
    SampleInfo info{prompts[i], family.name(), model.base, loras};
    char name[64];
    std::snprintf(name, sizeof(name), "%03zu-%llu.png", i, static_cast<unsigned long long>(prompts[i].seed));
    const std::string path = (fs::path(out) / name).string();
    write_sample_png(path, images[i], info);
    std::cout << "wrote " << path << "\n";
  }
  if (images.size() > 1) {
    bool same_size = true;
    for (const Image& im : images) same_size &= im.width == images[0].width && im.height == images[0].height;
    if (same_size) {
      const std::string path = (fs::path(out) / "grid.png").string();
      const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(images.size()))));
      write_png(path, make_grid(images, columns), {{"parameters", "grid of " + std::to_string(images.size()) + " samples, row by row"}});
      std::cout << "wrote " << path << "\n";
    }
  }
  return 0;
}

}  // namespace dt
