#pragma once

namespace dt {

// Sets LibTorch's intra-op thread count to the cores this process may use (it defaults to 1 on
// some builds), honouring DT_THREADS when set, and has glibc's malloc keep freed memory for reuse
// (runtime.cc says why; GLIBC_TUNABLES or MALLOC_*_ in the environment leave malloc as they say),
// starts LibTorch's worker threads now rather than in the first step, and ignores SIGPIPE (a write
// to a dead peer's socket is then an error, not a silent end).
void init_runtime();

// The number of cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

}  // namespace dt
