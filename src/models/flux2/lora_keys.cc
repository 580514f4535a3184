// FLUX.2 LoRA key names (specs/flux2.md §3, §10; lora-formats.md §2): diffusers paths, and the
// original BFL names that ComfyUI, musubi-tuner (kohya), ai-toolkit and OneTrainer's ORIGINAL /
// COMFY / KOHYA formats use, where each double block's q/k/v are one fused `qkv` per stream and the
// final AdaLN has its row halves swapped.
#include "lora/keymap.h"
#include "models/flux2/family.h"

namespace dt::flux2 {
using lora::KeyMap;
using lora::NativeRule;

namespace {

KeyMap make() {
  KeyMap k;
  k.family = "flux2-klein";
  k.architecture = "Flux.2/lora";
  k.linears = {"x_embedder", "context_embedder", "time_guidance_embed.timestep_embedder.linear_1",
               "time_guidance_embed.timestep_embedder.linear_2", "double_stream_modulation_img.linear",
               "double_stream_modulation_txt.linear", "single_stream_modulation.linear", "norm_out.linear", "proj_out"};
  const std::string d = "transformer_blocks.{n}.", s = "single_transformer_blocks.{n}.";
  for (const char* linear : {"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                             "attn.add_v_proj", "attn.to_add_out", "ff.linear_in", "ff.linear_out", "ff_context.linear_in",
                             "ff_context.linear_out"})
    k.linears.push_back(d + linear);
  k.linears.push_back(s + "attn.to_qkv_mlp_proj");
  k.linears.push_back(s + "attn.to_out");

  const std::string o = "double_blocks.{n}.";
  k.native = {
      {"img_in", {"x_embedder"}},
      {"txt_in", {"context_embedder"}},
      {"time_in.in_layer", {"time_guidance_embed.timestep_embedder.linear_1"}},
      {"time_in.out_layer", {"time_guidance_embed.timestep_embedder.linear_2"}},
      {"double_stream_modulation_img.lin", {"double_stream_modulation_img.linear"}},
      {"double_stream_modulation_txt.lin", {"double_stream_modulation_txt.linear"}},
      {"single_stream_modulation.lin", {"single_stream_modulation.linear"}},
      {"final_layer.linear", {"proj_out"}},
      {"final_layer.adaLN_modulation.1", {"norm_out.linear"}, /*swap_halves=*/true},  // [shift ; scale] vs [scale ; shift]
      {o + "img_attn.qkv", {d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"}},
      {o + "txt_attn.qkv", {d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"}},
      {o + "img_attn.proj", {d + "attn.to_out.0"}},
      {o + "txt_attn.proj", {d + "attn.to_add_out"}},
      {o + "img_mlp.0", {d + "ff.linear_in"}},
      {o + "img_mlp.2", {d + "ff.linear_out"}},
      {o + "txt_mlp.0", {d + "ff_context.linear_in"}},
      {o + "txt_mlp.2", {d + "ff_context.linear_out"}},
      {"single_blocks.{n}.linear1", {s + "attn.to_qkv_mlp_proj"}},
      {"single_blocks.{n}.linear2", {s + "attn.to_out"}},
  };
  // ComfyUI, musubi-tuner and ai-toolkit run the BFL model: their files use the native names.
  k.comfyui_native = true;
  // diffusers v0.40's converter for `diffusion_model.` + BFL names refuses `.alpha` keys and maps
  // final_layer.adaLN_modulation.1 without swapping its halves; ComfyUI's FLUX table (written for
  // FLUX.1) names no time_guidance_embed or modulation layer.
  k.comfyui_as_diffusers = true;
  k.comfyui_native_only = {"time_guidance_embed.timestep_embedder.linear_1", "time_guidance_embed.timestep_embedder.linear_2",
                           "double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
                           "single_stream_modulation.linear"};
  return k;
}

}  // namespace

const KeyMap& lora_keys() {
  static const KeyMap keys = make();
  return keys;
}

}  // namespace dt::flux2
