// LoRA files in and out (shared/specs/lora-formats.md): OneTrainer (internal and diffusers-style),
// kohya / musubi-tuner (`lora_unet_…`), diffusers / PEFT (`lora_A` / `lora_B`, alpha from
// `lora_adapter_metadata`), ComfyUI (`diffusion_model.…`, diffusers or native names, fused qkv),
// ai-toolkit and OneTrainer ORIGINAL; stored as bf16, fp16 or fp32.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <c10/core/ScalarType.h>

#include "lora/keymap.h"
#include "lora/weights.h"

namespace torch::nn {
class Module;
}

namespace dt {
class Checkpoint;
}

namespace dt::lora {

// Layouts deltatrain writes (and recognises when reading):
//   comfyui        diffusion_model. + tool names, lora_A/B + .alpha (scale folded into B instead
//                  where KeyMap::comfyui_folds_alpha: FLUX.2)
//   comfyui-native diffusion_model. + native names (fused), lora_down/up + .alpha
//   peft           transformer. + diffusers names, lora_A/B, scale folded into B, and
//                  lora_adapter_metadata saying scale 1 (keys prefixed transformer., as diffusers)
//   kohya          lora_unet_ + flattened tool names, lora_down/up + .alpha
//   onetrainer     transformer. + diffusers names, lora_down/up + .alpha (OneTrainer internal)
//   original       bare tool names, lora_A/B + .alpha
//   aitoolkit      diffusion_model. + tool names, lora_A/B, alpha folded into B (scale 1)
// Tool names are the native ones (fused) when KeyMap::comfyui_native (FLUX.2: BFL names), else the
// diffusers ones (Z-Image).
enum class Format { comfyui, comfyui_native, peft, kohya, onetrainer, original, aitoolkit };
const char* format_name(Format f);
Format format_by_name(const std::string& name);  // dt::Error listing the names

// Reads a LoRA file for a model of the family `keys`. Module names in either namespace, dotted or
// flattened, are mapped to the diffusers paths; fused native modules are split exactly. With a
// model, every module must also be one of its dt::nn::Linear layers with fitting shapes. Keys that
// match no module, unsupported adapter kinds and misfitting shapes are one dt::Error naming the
// file and listing them.
LoraWeights read_lora(const std::string& path, const KeyMap& keys, torch::nn::Module* model = nullptr);
// The family is the first of `candidates` (every family's table) that takes every module of the
// file (dt::Error when none does).
LoraWeights read_lora(const std::string& path, const std::vector<const KeyMap*>& candidates);

struct WriteOptions {
  Format format = Format::comfyui;
  c10::ScalarType dtype = c10::kFloat;  // storage dtype of the matrices
  std::string base_model;               // identity of the model trained on, recorded in the metadata
  std::map<std::string, std::string> metadata;  // extra keys (e.g. the training config)
};
// Writes atomically, with metadata: modelspec.* (architecture, date), deltatrain.version,
// deltatrain.rank / .alpha (the common values or "mixed"), deltatrain.base_model, deltatrain.targets.
void write_lora(const std::string& path, const LoraWeights& lora, const KeyMap& keys, const WriteOptions& options = {});

// Adds strength · delta of each file to the model's weights (the `forward --lora` semantics: the
// deltas of several files on one layer add up).
void merge_lora_files(torch::nn::Module& model, const KeyMap& keys,
                      const std::vector<std::pair<std::string, double>>& files);

// The `deltatrain inspect` line for a LoRA file: format, ranks, alphas, number of targets and the
// family of `candidates` it fits; empty when the checkpoint is not a single file with LoRA tensors.
std::string describe_lora(const Checkpoint& checkpoint, const std::vector<const KeyMap*>& candidates);

}  // namespace dt::lora
