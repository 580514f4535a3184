// Z-Image LoRA key names (specs/z-image.md §3, §10; lora-formats.md §2): diffusers paths, and the
// ComfyUI-native names, where q/k/v are one fused `attention.qkv` and the embedder and final layer
// lose their patch-size suffix.
#include "lora/keymap.h"
#include "models/zimage/family.h"

namespace dt::zimage {
using lora::KeyMap;
using lora::NativeRule;

namespace {

KeyMap make() {
  KeyMap k;
  k.family = "zimage";
  k.architecture = "Z-Image/lora";
  k.linears = {"all_x_embedder.2-1", "all_final_layer.2-1.linear", "all_final_layer.2-1.adaLN_modulation.1",
               "cap_embedder.1", "t_embedder.mlp.0", "t_embedder.mlp.2"};
  for (std::string block : {"layers.{n}", "noise_refiner.{n}", "context_refiner.{n}"}) {
    for (const char* linear : {"attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
                               "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"})
      k.linears.push_back(block + "." + linear);
    if (block != "context_refiner.{n}") k.linears.push_back(block + ".adaLN_modulation.0");  // refiner is unmodulated
    k.native.push_back({block + ".attention.qkv",
                        {block + ".attention.to_q", block + ".attention.to_k", block + ".attention.to_v"}});
    k.native.push_back({block + ".attention.out", {block + ".attention.to_out.0"}});
  }
  k.native.push_back({"x_embedder", {"all_x_embedder.2-1"}});
  k.native.push_back({"final_layer.linear", {"all_final_layer.2-1.linear"}});
  k.native.push_back({"final_layer.adaLN_modulation.1", {"all_final_layer.2-1.adaLN_modulation.1"}});
  // ComfyUI maps diffusers names onto its fused qkv itself, so split files load without a rank-3r
  // fusion (lora-formats.md §3.5).
  k.comfyui_native = false;
  return k;
}

}  // namespace

const KeyMap& lora_keys() {
  static const KeyMap keys = make();
  return keys;
}

}  // namespace dt::zimage
