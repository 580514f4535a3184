#include "vae/config.h"

#include "core/error.h"

namespace dt {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <typename T>
T value_or(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw file_error(source, std::string("config key '") + key + "' has the wrong type");
  }
}

}  // namespace

VaeConfig VaeConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw file_error(source, "VAE config is not a JSON object");
  VaeConfig c;
  const auto class_name = value_or<std::string>(j, "_class_name", "AutoencoderKL", source);
  if (class_name == "AutoencoderKLFlux2") c.kind = VaeKind::kFlux2;
  else if (class_name != "AutoencoderKL")
    throw file_error(source, "'_class_name' is '" + class_name + "', not AutoencoderKL or AutoencoderKLFlux2");
  const bool flux2 = c.kind == VaeKind::kFlux2;
  // Absent keys take the defaults of the diffusers class named.
  c.in_channels = value_or<int64_t>(j, "in_channels", 3, source);
  c.out_channels = value_or<int64_t>(j, "out_channels", 3, source);
  c.latent_channels = value_or<int64_t>(j, "latent_channels", flux2 ? 32 : 4, source);
  c.block_out_channels = value_or<std::vector<int64_t>>(
      j, "block_out_channels", flux2 ? std::vector<int64_t>{128, 256, 512, 512} : std::vector<int64_t>{64}, source);
  c.decoder_block_out_channels = value_or<std::vector<int64_t>>(j, "decoder_block_out_channels", c.block_out_channels, source);
  c.layers_per_block = value_or<int64_t>(j, "layers_per_block", flux2 ? 2 : 1, source);
  c.norm_num_groups = value_or<int64_t>(j, "norm_num_groups", 32, source);
  c.mid_block_add_attention = value_or<bool>(j, "mid_block_add_attention", true, source);
  c.use_quant_conv = value_or<bool>(j, "use_quant_conv", true, source);
  c.use_post_quant_conv = value_or<bool>(j, "use_post_quant_conv", true, source);
  c.batch_norm_eps = value_or<double>(j, "batch_norm_eps", 1e-4, source);
  c.batch_norm_momentum = value_or<double>(j, "batch_norm_momentum", 0.1, source);
  c.patch_size = value_or<std::vector<int64_t>>(j, "patch_size", {2, 2}, source);
  if (!flux2) {
    c.scaling_factor = value_or<double>(j, "scaling_factor", 0.18215, source);
    if (j.contains("shift_factor") && !j["shift_factor"].is_null()) c.shift_factor = value_or<double>(j, "shift_factor", 0.0, source);
  }
  const auto act = value_or<std::string>(j, "act_fn", "silu", source);
  if (act != "silu") throw file_error(source, "act_fn '" + act + "' is not supported (only silu)");
  for (const char* key : {"down_block_types", "up_block_types"}) {
    const std::string want = key[0] == 'd' ? "DownEncoderBlock2D" : "UpDecoderBlock2D";
    const auto types = value_or<std::vector<std::string>>(j, key, {}, source);
    for (const auto& t : types)
      if (t != want) throw file_error(source, std::string(key) + " holds '" + t + "'; only " + want + " is supported");
    if (!types.empty() && types.size() != c.block_out_channels.size())
      throw file_error(source, std::string(key) + " has " + std::to_string(types.size()) + " entries but block_out_channels " +
                                   std::to_string(c.block_out_channels.size()));
  }
  c.validate(source);
  return c;
}

nlohmann::json VaeConfig::to_json() const {
  const size_t n = block_out_channels.size();
  nlohmann::json j = {
      {"_class_name", class_name()},
      {"_diffusers_version", "0.40.0"},
      {"act_fn", "silu"},
      {"block_out_channels", block_out_channels},
      {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
      {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
      {"force_upcast", true},
      {"in_channels", in_channels},
      {"out_channels", out_channels},
      {"latent_channels", latent_channels},
      {"layers_per_block", layers_per_block},
      {"mid_block_add_attention", mid_block_add_attention},
      {"norm_num_groups", norm_num_groups},
      {"sample_size", 32},
      {"use_quant_conv", use_quant_conv},
      {"use_post_quant_conv", use_post_quant_conv},
  };
  if (kind == VaeKind::kFlux2) {
    j["batch_norm_eps"] = batch_norm_eps;
    j["batch_norm_momentum"] = batch_norm_momentum;
    j["patch_size"] = patch_size;
    j["decoder_block_out_channels"] = decoder_block_out_channels == block_out_channels
                                          ? nlohmann::json(nullptr)
                                          : nlohmann::json(decoder_block_out_channels);
  } else {
    j["scaling_factor"] = scaling_factor ? nlohmann::json(*scaling_factor) : nlohmann::json(nullptr);
    j["shift_factor"] = shift_factor ? nlohmann::json(*shift_factor) : nlohmann::json(nullptr);
    j["latents_mean"] = nullptr;
    j["latents_std"] = nullptr;
  }
  return j;
}

VaeConfig VaeConfig::from_weights(const ShapeOf& shape_of, const std::string& source) {
  auto need = [&](const std::string& name, size_t rank) {
    auto shape = shape_of(name);
    if (!shape) throw file_error(source, "not an autoencoder checkpoint: no tensor '" + name + "'");
    if (shape->size() != rank) throw file_error(source, "tensor '" + name + "' has shape " + shape_string(*shape));
    return *shape;
  };
  VaeConfig c;
  c.kind = shape_of("bn.running_mean") ? VaeKind::kFlux2 : VaeKind::kAutoencoderKL;
  c.in_channels = need("encoder.conv_in.weight", 4)[1];
  c.out_channels = need("decoder.conv_out.weight", 4)[0];
  c.latent_channels = need("decoder.conv_in.weight", 4)[1];
  for (int i = 0; shape_of("encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight"); ++i)
    c.block_out_channels.push_back(need("encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight", 4)[0]);
  if (c.block_out_channels.empty()) need("encoder.down_blocks.0.resnets.0.conv1.weight", 4);
  for (int i = static_cast<int>(c.levels()) - 1; i >= 0; --i)
    c.decoder_block_out_channels.push_back(need("decoder.up_blocks." + std::to_string(i) + ".resnets.0.conv1.weight", 4)[0]);
  c.layers_per_block = 0;
  while (shape_of("encoder.down_blocks.0.resnets." + std::to_string(c.layers_per_block) + ".conv1.weight")) ++c.layers_per_block;
  c.mid_block_add_attention = shape_of("encoder.mid_block.attentions.0.to_q.weight").has_value();
  c.use_quant_conv = shape_of("quant_conv.weight").has_value();
  c.use_post_quant_conv = shape_of("post_quant_conv.weight").has_value();
  if (c.kind == VaeKind::kFlux2) {
    const int64_t bn = need("bn.running_mean", 1)[0];
    if (bn != 4 * c.latent_channels)
      throw file_error(source, "bn.running_mean has " + std::to_string(bn) + " channels, expected 4 × " +
                                   std::to_string(c.latent_channels) + " latent channels");
  } else if (c.latent_channels == 16) {
    // The FLUX.1 VAE's published latent scaling (specs/z-image.md §6).
    c.scaling_factor = 0.3611;
    c.shift_factor = 0.1159;
  }
  c.validate(source);
  return c;
}

void VaeConfig::validate(const std::string& source) const {
  auto fail = [&](const std::string& what) { throw file_error(source, "invalid VAE config: " + what); };
  if (block_out_channels.empty() || block_out_channels.size() > 8) fail("block_out_channels must have 1 to 8 entries");
  if (decoder_block_out_channels.size() != block_out_channels.size())
    fail("decoder_block_out_channels must have as many entries as block_out_channels");
  if (in_channels <= 0 || out_channels <= 0 || latent_channels <= 0 || layers_per_block <= 0 || norm_num_groups <= 0)
    fail("channel counts, layers_per_block and norm_num_groups must be positive");
  for (const auto* list : {&block_out_channels, &decoder_block_out_channels})
    for (int64_t ch : *list)
      if (ch <= 0 || ch % norm_num_groups != 0)
        fail("block channels " + std::to_string(ch) + " not a positive multiple of norm_num_groups " + std::to_string(norm_num_groups));
  if (kind == VaeKind::kFlux2) {
    if (patch_size.size() != 2 || patch_size[0] != 2 || patch_size[1] != 2) fail("patch_size must be [2, 2]");
    if (!(batch_norm_eps > 0)) fail("batch_norm_eps must be positive");
  }
}

}  // namespace dt
