// deltatrain launch --nproc-per-node N [--nnodes M --node-rank K --master ADDR:PORT] -- COMMAND ARGS...
#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "dist/launcher.h"

namespace dt {

int run_launch(int argc, char** argv) {
  CLI::App app("Start the ranks of a data-parallel train or transfer on this machine, as torchrun does (docs/distributed.md). "
               "Example: deltatrain launch --nproc-per-node 2 -- train run.toml", argv[0]);
  dist::LaunchPlan plan;
  std::string master;
  std::vector<std::string> command;
  int grace = 10;
  app.add_option("--nproc-per-node", plan.nproc_per_node, "ranks on this machine (one per GPU)")->required();
  app.add_option("--nnodes", plan.nnodes, "machines in the run")->capture_default_str();
  app.add_option("--node-rank", plan.node_rank, "this machine's place among them, 0 for rank 0's")->capture_default_str();
  app.add_option("--master", master, "ADDR:PORT of rank 0's machine (the same on every machine); one machine: a free local port");
  app.add_option("--grace", grace, "seconds the other ranks get to stop on their own after one fails")->capture_default_str();
  app.add_option("command", command, "the deltatrain command and its arguments, after --")->required();
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  if (!master.empty()) dist::parse_master(master, plan);
  plan.grace = std::chrono::seconds(grace);
  return dist::launch_ranks(plan, "/proc/self/exe", command);
}

}  // namespace dt
