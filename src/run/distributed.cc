#include "run/distributed.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "core/config.h"
#include "core/error.h"
#include "core/hash.h"
#include "dist/group.h"

namespace dt {

void join_ranks(RunConfig& run, const std::string& command) {
  const dist::Launch launch = dist::launch_from_env();
  if (launch.world_size == 1) return;
  // Before the device changes below: that part differs between ranks by design.
  const std::string identity = sha256_hex(command + "\n" + config_to_toml(run));
  if (run.distributed.timeout < 1) throw Error("distributed.timeout must be at least 1 (seconds)");
  dist::GroupOptions options;
  const bool cuda = run.model.device.rfind("cuda", 0) == 0;
  options.backend = run.distributed.backend.empty() ? (cuda ? "nccl" : "gloo") : run.distributed.backend;
  options.timeout = std::chrono::seconds(run.distributed.timeout);
  if (run.model.device == "cuda") run.model.device = "cuda:" + std::to_string(launch.local_rank);
  dist::join(launch, options);
  if (launch.rank == 0) {
    std::cout << "rank 0 of " << launch.world_size << " (" << options.backend << ", rendezvous at " << launch.master_addr
              << ":" << launch.master_port << ")\n";
  } else {
    std::cout.flush();
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, STDOUT_FILENO);
      close(null);
    }
  }
  dist::world().agree("command and config", identity, "every rank must run the same command with the same config");
}

}  // namespace dt
