#include "core/runtime.h"

#include <sched.h>

#include <cstdlib>
#include <string>

#include <ATen/Parallel.h>

namespace dt {

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
  int threads = available_cores();
  if (const char* env = std::getenv("DT_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) threads = n;
  }
  at::set_num_threads(threads);
}

}  // namespace dt
