#include "core/runtime.h"

#include <sched.h>

#include <climits>
#include <csignal>
#include <cstdlib>
#include <string>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <ATen/Parallel.h>

namespace dt {
namespace {

// glibc's malloc first gives every block above 128 KiB a mapping of its own and hands the top of
// its heap back to the system once 128 KiB of it are free, raising both limits only as it sees such
// blocks freed. A training step's activations are then page-faulted in afresh, step after step,
// until the limits have grown: the first forward + backward of the mid-size Z-Image took 2.1× (bf16)
// and 1.6× (fp32) a later one, the second still 1.5× (bench/RESULTS.md, "First passes"). Blocks up
// to 32 MiB (glibc's largest threshold) come from the heap here, freed memory stays for the next
// step, and the heap grows 256 MiB at a time. Memory given back on purpose (malloc_trim after each
// layer quantized to 8 bits) still goes back. A process started with malloc settings of its own
// (GLIBC_TUNABLES or MALLOC_*_) keeps them.
void keep_freed_memory() {
#ifdef __GLIBC__
  for (const char* name : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"})
    if (std::getenv(name)) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  mallopt(M_TOP_PAD, 256 << 20);
#endif
}

// LibTorch 1.13 initialises each thread's thread count lazily, on the thread's first ATen call,
// and that initialisation re-creates its pthreadpool (kept for QNNPACK), whose new threads spin
// before they sleep. Left to the first step, every OpenMP worker does so in the middle of the
// step's first operations, and the spinning threads take the cores from it: the first forward of
// a small model took twice a later one (bench/RESULTS.md, "First passes"). One empty parallel
// region here has the workers do it at start.
void start_pool_threads() {
  at::parallel_for(0, at::get_num_threads(), 1, [](int64_t, int64_t) { at::get_num_threads(); });
}

// Gloo writes to its peers with writev(), which raises SIGPIPE when the peer has died; its default
// action ends this process without a word, where ignored the write fails and the collective's error
// names the rank that stopped (tests/distributed_test.sh kills one). Python, under which PyTorch
// usually runs, ignores it from the start.
void ignore_broken_pipes() { std::signal(SIGPIPE, SIG_IGN); }

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

void init_runtime() {
  ignore_broken_pipes();
  keep_freed_memory();
  int threads = available_cores();
  if (const char* env = std::getenv("DT_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) threads = n;
  }
  at::set_num_threads(threads);
  start_pool_threads();
}

}  // namespace dt
