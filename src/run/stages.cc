#include "run/stages.h"

#include <chrono>
#include <cstdio>

#include "core/hash.h"
#include "io/atomic_file.h"
#include "io/json_file.h"

namespace dt {
namespace fs = std::filesystem;

Stages::Stages(fs::path out, int total, std::string keys) : out_(std::move(out)), keys_(std::move(keys)), total_(total) {
  const fs::path file = out_ / keys_;
  fs::create_directories(file.parent_path());
  if (fs::exists(file)) done_ = read_json_file(file.string());
}

std::string Stages::run(const std::string& name, const std::string& after, const std::string& inputs,
                        const std::string& output, const std::function<void(const std::string& key)>& make) {
  const std::string key = sha256_hex(after + "\n" + name + "\n" + inputs);
  ++index_;
  if (done_.contains(name) && done_[name] == key && fs::exists(out_ / output)) {
    std::printf("stage %d/%d %-12s cached\n", index_, total_, name.c_str());
    return key;
  }
  std::printf("stage %d/%d %-12s ...\n", index_, total_, name.c_str());
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  make(key);
  done_[name] = key;
  write_file_atomic((out_ / keys_).string(), done_.dump(2) + "\n");
  std::printf("stage %d/%d %-12s done in %.0f s\n", index_, total_, name.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  std::fflush(stdout);
  return key;
}

}  // namespace dt
