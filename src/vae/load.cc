#include "vae/load.h"

#include <filesystem>
#include <set>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"

namespace dt::vae {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = s.find('.', start)) != std::string::npos; start = dot + 1) parts.push_back(s.substr(start, dot - start));
  parts.push_back(s.substr(start));
  return parts;
}

std::string join(const std::vector<std::string>& parts, size_t from) {
  std::string s;
  for (size_t i = from; i < parts.size(); ++i) s += (s.empty() ? "" : ".") + parts[i];
  return s;
}

// Where the VAE's tensors live inside a checkpoint and under which names.
struct Layout {
  const Checkpoint* ck = nullptr;
  std::string prefix;  // "", "vae." or "first_stage_model."
  bool original = false;
  int64_t levels = 0;

  std::string file_key(const std::string& name) const {
    if (!original) return prefix + name;
    std::string key = prefix + original_vae_name(name, levels);
    // LDM-style files (unlike BFL's FLUX.2 file) keep the quant convs at the top level.
    if ((name.rfind("quant_conv.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0) && !ck->contains(key)) return prefix + name;
    return key;
  }
  std::optional<std::vector<int64_t>> shape_of(const std::string& name) const {
    const std::string key = file_key(name);
    if (!ck->contains(key)) return std::nullopt;
    return ck->info(key).shape;
  }
};

Layout find_layout(const Checkpoint& ck) {
  Layout layout;
  layout.ck = &ck;
  for (const char* prefix : {"", "vae.", "first_stage_model."}) {
    if (!ck.contains(std::string(prefix) + "encoder.conv_in.weight")) continue;
    layout.prefix = prefix;
    if (ck.contains(layout.prefix + "encoder.conv_norm_out.weight")) return layout;
    if (!ck.contains(layout.prefix + "encoder.norm_out.weight")) break;
    layout.original = true;
    while (ck.contains(layout.prefix + "encoder.down." + std::to_string(layout.levels) + ".block.0.conv1.weight")) ++layout.levels;
    return layout;
  }
  throw file_error(ck.path(), "not an autoencoder checkpoint: no encoder.conv_in / encoder.conv_norm_out (diffusers) or "
                              "encoder.norm_out (original) tensors");
}

}  // namespace

std::string original_vae_name(const std::string& name, int64_t levels) {
  const auto p = split(name);
  if (p[0] == "quant_conv") return "encoder." + name;
  if (p[0] == "post_quant_conv") return "decoder." + name;
  if ((p[0] != "encoder" && p[0] != "decoder") || p.size() < 3) return name;
  std::vector<std::string> o = {p[0]};
  size_t rest = 2;
  bool in_resnet = false;
  if (p[1] == "conv_norm_out") {
    o.push_back("norm_out");
  } else if ((p[1] == "down_blocks" || p[1] == "up_blocks") && p.size() >= 6) {
    const bool down = p[1] == "down_blocks";
    const int64_t i = std::stoll(p[2]);
    o.push_back(down ? "down" : "up");
    o.push_back(std::to_string(down ? i : levels - 1 - i));  // the original decoder counts levels upwards
    in_resnet = p[3] == "resnets";
    o.push_back(in_resnet ? "block" : (down ? "downsample" : "upsample"));
    if (in_resnet) o.push_back(p[4]);
    rest = 5;  // past "resnets.j" or "downsamplers.0"
  } else if (p[1] == "mid_block" && p.size() >= 5) {
    o.push_back("mid");
    if (p[2] == "resnets") {
      o.push_back("block_" + std::to_string(std::stoll(p[3]) + 1));
      in_resnet = true;
      rest = 4;
    } else {  // attentions.0.<module>
      o.push_back("attn_1");
      const std::string& m = p[4];
      o.push_back(m == "group_norm" ? "norm" : m == "to_q" ? "q" : m == "to_k" ? "k" : m == "to_v" ? "v" : "proj_out");
      rest = m == "to_out" ? 6 : 5;  // to_out.0
    }
  } else {
    rest = 1;
  }
  for (size_t i = rest; i < p.size(); ++i) o.push_back(in_resnet && p[i] == "conv_shortcut" ? "nin_shortcut" : p[i]);
  return join(o, 0);
}

AutoencoderKL load_autoencoder(const std::string& path_in, const LoadOptions& options) {
  const std::string path = pipeline_component(path_in, "vae");
  const Checkpoint ck = Checkpoint::open(path);
  const Layout layout = find_layout(ck);
  auto shape_of = [&](const std::string& name) { return layout.shape_of(name); };

  const bool bn_in_weights = shape_of("bn.running_mean").has_value();
  const bool config_file = !ck.config().empty();
  nlohmann::json json = ck.config();
  if (config_file && !json.contains("_class_name")) json["_class_name"] = bn_in_weights ? "AutoencoderKLFlux2" : "AutoencoderKL";
  VaeConfig config = config_file ? VaeConfig::from_json(json, path + "/config.json") : VaeConfig::from_weights(shape_of, path);
  if (layout.original && layout.levels != config.levels())
    throw file_error(path, "the weights have " + std::to_string(layout.levels) + " encoder levels, the config " +
                               std::to_string(config.levels()));
  if (bn_in_weights != (config.kind == VaeKind::kFlux2))
    throw file_error(path, std::string("config.json names ") + config.class_name() + " but the weights " +
                               (bn_in_weights ? "hold" : "lack") + " the BatchNorm statistics bn.running_mean of AutoencoderKLFlux2");

  AutoencoderKL vae(config);
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto load = [&](const std::string& name, at::Tensor& target, bool keep_float) {
    const std::string key = layout.file_key(name);
    if (!ck.contains(key)) {
      if (name == "bn.num_batches_tracked") return;  // a training counter nothing reads
      throw file_error(path, "missing tensor '" + key + "' (" + config.class_name() + ", " +
                                 (config_file ? "config.json" : "configuration read from the shapes") + ")");
    }
    at::Tensor t = ck.get(key);
    // The original mid-block attention stores its projections as 1×1 convolutions.
    if (t.dim() == 4 && target.dim() == 2 && t.size(2) == 1 && t.size(3) == 1) t = t.flatten(1);
    if (t.sizes() != target.sizes())
      throw file_error(path, "tensor '" + key + "' has shape " + c10::str(t.sizes()) + ", expected " + c10::str(target.sizes()));
    if (!at::isFloatingType(t.scalar_type()) && at::isFloatingType(target.scalar_type()))
      throw file_error(path, "tensor '" + key + "' has dtype " + std::string(c10::toString(t.scalar_type())) + ", expected a float type");
    const auto dtype = !at::isFloatingType(target.scalar_type()) ? target.scalar_type() : keep_float ? at::kFloat : options.compute_dtype;
    target.set_data(t.to(options.device, dtype, /*non_blocking=*/false, /*copy=*/true));
    used.insert(key);
  };
  for (auto& item : vae->named_parameters()) load(item.key(), item.value(), false);
  for (auto& item : vae->named_buffers()) load(item.key(), item.value(), item.key().rfind("bn.", 0) == 0);

  for (const auto& name : ck.names()) {
    if (name.rfind(layout.prefix, 0) != 0 || used.count(name)) continue;
    // Other components of an all-in-one file live under other prefixes; under the VAE's own, or
    // in a VAE file, every tensor must be one the model uses.
    if (name == layout.file_key("bn.num_batches_tracked")) continue;
    throw file_error(path, "unexpected tensor '" + name + "': not part of an " + config.class_name() + " with this configuration");
  }
  return vae;
}

}  // namespace dt::vae
