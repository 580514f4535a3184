#include <CLI/CLI.hpp>
#include <c10/core/ScalarType.h>

#include <iomanip>
#include <iostream>

#include "cli/command.h"
#include "io/checkpoint.h"

namespace dt {

int run_inspect(int argc, char** argv) {
  CLI::App app("Show the tensors, parameter count and metadata of a checkpoint or LoRA.", argv[0]);
  std::string path;
  bool quiet = false;
  app.add_option("PATH", path, "a .safetensors file or a diffusers / transformers model folder")->required();
  app.add_flag("--summary", quiet, "print only the totals and metadata, not every tensor");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  Checkpoint ck = Checkpoint::open(path);
  int64_t params = 0;
  uint64_t bytes = 0;
  for (const auto& name : ck.names()) {
    const TensorInfo& info = ck.info(name);
    int64_t n = 1;
    for (auto d : info.shape) n *= d;
    params += n;
    bytes += info.end - info.begin;
    if (!quiet) {
      std::cout << std::left << std::setw(64) << name << " " << std::setw(8) << info.dtype << " [";
      for (size_t i = 0; i < info.shape.size(); ++i) std::cout << (i ? ", " : "") << info.shape[i];
      std::cout << "]\n";
    }
  }
  std::cout << "files: " << ck.files().size() << "\ntensors: " << ck.names().size() << "\nparameters: " << params
            << "\nbytes: " << bytes << "\n";
  for (const auto& [k, v] : ck.metadata()) {
    std::string shown = v.size() > 200 ? v.substr(0, 200) + "..." : v;
    std::cout << "metadata " << k << ": " << shown << "\n";
  }
  return 0;
}

}  // namespace dt
