// `deltatrain launch`: the ranks of one machine started without Python, as torchrun starts them —
// one process per rank with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT set — and stopped together when one of them fails.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace dt::dist {

struct LaunchPlan {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  // Rank 0's machine; empty (one machine only): 127.0.0.1 and a free port.
  std::string master_addr;
  int master_port = 0;
  // How long the others may take to stop on their own (they see the failure at their next
  // collective and say which rank stopped) before they are terminated.
  std::chrono::seconds grace{10};
};

// "ADDR:PORT" into plan.master_addr / master_port; throws dt::Error for anything else.
void parse_master(const std::string& text, LaunchPlan& plan);

// Runs `program` with `args` as the plan's ranks of this machine and waits for them. DT_THREADS,
// unless set, becomes this machine's cores divided among its ranks. SIGINT and SIGTERM reach every
// rank. Returns 0 when every rank succeeded, else the exit status of the first that failed
// (128 + signal number for a signal), after saying which rank it was on stderr.
int launch_ranks(const LaunchPlan& plan, const std::string& program, const std::vector<std::string>& args);

}  // namespace dt::dist
