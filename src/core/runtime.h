#pragma once

namespace dt {

// Sets LibTorch's intra-op thread count to the cores this process may use (it defaults to 1 on
// some builds). Honours DT_THREADS when set.
void init_runtime();

// The number of cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

}  // namespace dt
