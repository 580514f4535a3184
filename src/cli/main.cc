#include <c10/util/Exception.h>

#include <cstring>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "core/runtime.h"
#include "dist/group.h"

namespace {

void print_usage(std::ostream& out) {
  out << "deltatrain " DT_VERSION " - LoRA training and delta transfer for flow-matching transformers\n\n"
      << "usage: deltatrain <command> [options]   (deltatrain <command> --help for its options)\n\ncommands:\n";
  for (const auto& c : dt::commands()) {
    std::string name = c.name;
    name.resize(std::max<size_t>(name.size() + 2, 14), ' ');
    out << "  " << name << c.summary << "\n";
  }
}

// The first line of a LibTorch error, without its C++ backtrace.
std::string first_line(const char* what) {
  std::string s(what);
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "deltatrain " DT_VERSION "\n";
    return 0;
  }
  for (const auto& c : dt::commands()) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    std::string name = std::string("deltatrain ") + c.name;
    argv[1] = name.data();
    std::string message;
    try {
      dt::init_runtime();
      if (!c.data_parallel && dt::dist::launch_from_env().world_size > 1)
        throw dt::Error(std::string("runs in one process, but this one was started as one of several ranks (WORLD_SIZE ") +
                        "is set): only train, transfer and cache run data-parallel");
      return c.run(argc - 1, argv + 1);
    } catch (const dt::Error& e) {
      message = e.what();
    } catch (const c10::Error& e) {
      message = first_line(e.what_without_backtrace());
    } catch (const std::bad_alloc&) {
      message = "out of memory";
    } catch (const std::exception& e) {
      message = first_line(e.what());
    }
    // In a data-parallel run the other ranks read why this one stops; each line names its rank.
    const dt::dist::Group& ranks = dt::dist::world();
    std::cerr << "deltatrain " << c.name << ": "
              << (ranks.size() > 1 ? "rank " + std::to_string(ranks.rank()) + ": " : std::string()) << "error: " << message
              << std::endl;
    ranks.post_failure(message);
    return 1;
  }
  std::cerr << "deltatrain: error: unknown command '" << argv[1] << "' (see deltatrain --help)\n";
  return 2;
}
