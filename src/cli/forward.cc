#include "cli/forward.h"

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "core/error.h"

namespace dt {

void forward_vae_encode(const ForwardArgs& args);  // forward_vae.cc
void forward_vae_decode(const ForwardArgs& args);

const std::vector<ForwardComponent>& forward_components() {
  static const std::vector<ForwardComponent> table = {
      {"zimage-transformer", forward_zimage_transformer},
      {"flux2-transformer", forward_flux2_transformer},
      {"qwen3", forward_qwen3},
      {"vae-encode", forward_vae_encode},
      {"vae-decode", forward_vae_decode},
  };
  return table;
}

int run_forward(int argc, char** argv) {
  CLI::App app("Run one model component on golden-style inputs and write its outputs.", argv[0]);
  std::string component;
  std::vector<std::string> loras;
  ForwardArgs args;
  std::string names;
  for (const auto& c : forward_components()) names += (names.empty() ? "" : ", ") + std::string(c.name);
  app.add_option("--component", component, "one of: " + names)->required();
  app.add_option("--model", args.model, "weights folder (config.json + safetensors) or file")->required();
  app.add_option("--inputs", args.inputs, "io.safetensors holding the inputs")->required();
  app.add_option("--case", args.case_name, "case prefix of the inputs (A, B, ...)");
  app.add_option("--output", args.output, "safetensors file to write the outputs to")->required();
  app.add_option("--lora", loras, "LoRA file to apply, FILE[:STRENGTH] (repeatable)");
  app.add_flag("--explicit-attention", args.explicit_attention, "use the explicit attention formula instead of the fused kernel");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  for (const auto& spec : loras) {
    auto colon = spec.rfind(':');
    double strength = 1.0;
    std::string file = spec;
    if (colon != std::string::npos && colon + 1 < spec.size()) {
      try {
        size_t used = 0;
        strength = std::stod(spec.substr(colon + 1), &used);
        if (used == spec.size() - colon - 1) file = spec.substr(0, colon);
        else strength = 1.0;
      } catch (const std::exception&) {
        strength = 1.0;
      }
    }
    args.loras.emplace_back(file, strength);
  }
  for (const auto& c : forward_components()) {
    if (component == c.name) {
      c.run(args);
      return 0;
    }
  }
  throw Error("unknown component '" + component + "' (known: " + names + ")");
}

}  // namespace dt
