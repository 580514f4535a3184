#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>

#include "cli/command.h"
#include "io/checkpoint.h"
#include "lora/file.h"
#include "lora/keymap.h"
#include "models/family.h"

namespace dt {

int run_inspect(int argc, char** argv) {
  CLI::App app("Show the tensors, parameter count and metadata of a checkpoint or LoRA.", argv[0]);
  std::string path;
  bool summary = false;
  app.add_option("PATH", path, "a .safetensors file, a diffusers / transformers model folder or a diffusers pipeline folder")
      ->required();
  app.add_flag("--summary", summary, "print only the totals and metadata, not every tensor");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  const Checkpoint ck = Checkpoint::open(path);
  int64_t params = 0;
  uint64_t bytes = 0;
  for (const auto& name : ck.names()) {
    const TensorInfo& info = ck.info(name);
    int64_t n = 1;
    for (auto d : info.shape) n *= d;
    params += n;
    bytes += info.end - info.begin;
    if (summary) continue;
    std::cout << std::left << std::setw(64) << name << " " << std::setw(8) << info.dtype << " [";
    for (size_t i = 0; i < info.shape.size(); ++i) std::cout << (i ? ", " : "") << info.shape[i];
    std::cout << "]\n";
  }
  if (!ck.components().empty()) {
    std::cout << "components:";
    for (const auto& c : ck.components()) std::cout << " " << c;
    std::cout << "\n";
  }
  std::cout << "files: " << ck.files().size() << "\ntensors: " << ck.names().size() << "\nparameters: " << params
            << "\nbytes: " << bytes << "\n";
  // What the checkpoint is: a LoRA of some family's layers, or a family's model.
  std::vector<const lora::KeyMap*> key_maps;
  for (const Family* f : families()) key_maps.push_back(&f->lora_keys());
  if (const std::string found = lora::describe_lora(ck, key_maps); !found.empty()) std::cout << "lora: " << found << "\n";
  for (const Family* f : families())
    if (const std::string found = f->describe(ck); !found.empty()) std::cout << "model: " << found << "\n";
  for (const auto& [key, value] : ck.metadata()) {
    const std::string shown = value.size() > 200 ? value.substr(0, 200) + "..." : value;
    std::cout << "metadata " << key << ": " << shown << "\n";
  }
  return 0;
}

}  // namespace dt
