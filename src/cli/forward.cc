#include "cli/forward.h"

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "core/listing.h"
#include "models/family.h"

namespace dt {

std::vector<ForwardComponent> forward_components() {
  std::vector<ForwardComponent> table;
  for (const Family* f : families()) table.push_back({f->forward_component(), nullptr, f});
  table.push_back({"qwen3", forward_qwen3});
  table.push_back({"vae-encode", forward_vae_encode});
  table.push_back({"vae-decode", forward_vae_decode});
  return table;
}

int run_forward(int argc, char** argv) {
  CLI::App app("Run one model component on golden-style inputs and write its outputs.", argv[0]);
  std::string component;
  std::vector<std::string> loras;
  ForwardArgs args;
  std::vector<std::string> names;
  for (const auto& c : forward_components()) names.push_back(c.name);
  app.add_option("--component", component, "one of: " + join(names))->required();
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
      if (c.family) c.family->forward(args);
      else c.run(args);
      return 0;
    }
  }
  throw Error("unknown component '" + component + "' (known: " + join(names) + ")");
}

}  // namespace dt
