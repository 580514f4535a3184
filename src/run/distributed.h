// A run among data-parallel ranks: the ranks of torchrun's environment joined for one command with
// the run's [distributed] settings (docs/distributed.md).
#pragma once
#include <string>

#include "run/run_config.h"

namespace dt {

// Joins the ranks this process was started among (RANK, WORLD_SIZE, ...; nothing to do when it
// was started alone) before `command` runs `run`. Backend: [distributed] backend, else NCCL when
// model.device is CUDA, else Gloo. model.device "cuda" becomes cuda:LOCAL_RANK. Ranks other than
// 0 print only warnings and errors. Throws dt::Error for a bad environment, a rendezvous that does
// not complete, or a rank whose command or config differs from rank 0's.
void join_ranks(RunConfig& run, const std::string& command);

}  // namespace dt
