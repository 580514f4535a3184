// The deltatrain subcommands. Each lives in its own file under src/cli/ and is listed once in
// commands.cc.
#pragma once
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace dt {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);  // argv[0] is "deltatrain <name>"
  bool data_parallel = false;         // runs as one of several ranks (docs/distributed.md)
};

const std::vector<Command>& commands();

// Parses argv into app. Returns true when the command should run; otherwise sets exit_code
// (0 after --help, 2 after a usage error, reported as one line on stderr).
bool parse_args(CLI::App& app, int argc, char** argv, int& exit_code);

}  // namespace dt
