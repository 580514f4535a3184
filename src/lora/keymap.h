// The model-family part of LoRA key names: which Linear layers a family has (diffusers module
// paths) and how its native namespace (ComfyUI / original / BFL names) maps onto them, including
// fused modules (one native Linear = several diffusers Linears stacked by rows) and row-half swaps.
// A family's table is one file of its folder (models/<family>/lora_keys.cc), reached through
// Family::lora_keys().
//
// Names are templates in which `{n}` stands for a decimal number (a block index); the numbers of a
// native template and of its diffusers templates correspond in order.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace dt::lora {

struct NativeRule {
  std::string native;                  // "layers.{n}.attention.qkv"
  std::vector<std::string> diffusers;  // its row blocks in order: "layers.{n}.attention.to_q", ...
  bool swap_halves = false;            // the two row halves are swapped between the namespaces
};

struct KeyMap {
  std::string family;        // as Family::name(): "zimage"
  std::string architecture;  // modelspec.architecture of the family's LoRA files: "Z-Image/lora"
  std::vector<std::string> linears;  // every LoRA-able Linear, diffusers names
  std::vector<NativeRule> native;    // the native names that differ from the diffusers ones
  // True when the family's tools (ComfyUI, kohya / musubi-tuner, ai-toolkit, OneTrainer's ORIGINAL)
  // name modules natively: the comfyui, kohya, original and aitoolkit layouts then write native
  // names (fusing as the rules say); when false they write diffusers names.
  bool comfyui_native = false;
  // The comfyui layout is transformer. + diffusers names with the scale folded in, instead of
  // diffusion_model. + tool names with alpha tensors, where no file in the tool names loads exactly
  // in diffusers (FLUX.2: its converter refuses alpha and leaves the final AdaLN's halves unswapped).
  bool comfyui_as_diffusers = false;
  // Modules ComfyUI reaches only by their native names (FLUX.2: the time and modulation layers its
  // FLUX.1 table of diffusers names lacks). Folded files in diffusers names carry them a second time
  // as lora_unet_ + flattened native name, which diffusers' loader passes over.
  std::vector<std::string> comfyui_native_only;
};

// Template matching: the numbers `{n}` stand for in `name`, or nothing when it does not match.
// With `flat`, every '.' of the template matches '_' instead (kohya names).
std::optional<std::vector<std::string>> match_template(const std::string& tmpl, const std::string& name,
                                                       bool flat = false);
std::string fill_template(const std::string& tmpl, const std::vector<std::string>& numbers);

// The diffusers name of a family Linear written in either namespace, dotted or flattened ('_').
// `native_rule` is set when the name is a native one that a rule maps (fused or renamed).
struct Resolved {
  std::vector<std::string> modules;  // diffusers paths; more than one for a fused native module
  const NativeRule* rule = nullptr;
  bool native = false;  // the name was in the native namespace
};
std::optional<Resolved> resolve(const KeyMap& keys, const std::string& name, bool flat);

// The native name of a diffusers Linear, with its rule (nullptr when the names coincide) and
// its row block within a fused native module.
struct NativeName {
  std::string name;
  const NativeRule* rule = nullptr;
  size_t part = 0;
};
NativeName native_name(const KeyMap& keys, const std::string& diffusers);

}  // namespace dt::lora
