// What a process pays the first time it touches fresh memory (the first step of a run, before the
// warm-up pass: bench/RESULTS.md, "First passes"), in four ways, each on its own fresh mapping:
//   touched   one write per 4 KiB page (what a step's first use of new heap does)
//   populate  madvise(MADV_POPULATE_WRITE) over the whole mapping in one call (Linux 5.14)
//   mapped    mmap(MAP_POPULATE)
//   huge      madvise(MADV_HUGEPAGE), then one write per page (2 MiB pages where the kernel can)
// and one memset of memory already touched, for scale. Milliseconds per round, all from one run.
// Usage: first_touch_bench [MiB (64)] [rounds (3)]
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace {

constexpr size_t kPage = 4096;

char* fresh_mapping(size_t bytes, int extra_flags) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<char*>(p);
}

void touch_pages(char* p, size_t bytes) {
  for (size_t i = 0; i < bytes; i += kPage) p[i] = 1;
}

double milliseconds(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const size_t bytes = static_cast<size_t>(argc > 1 ? std::atoi(argv[1]) : 64) << 20;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::printf("%zu MiB, ms per round: touched  populate  mapped  huge  memset(touched memory)\n", bytes >> 20);
  for (int round = 0; round < rounds; ++round) {
    char *touched = nullptr, *populated = nullptr, *mapped = nullptr, *huge = nullptr;
    const double t_touched = milliseconds([&] {
      touched = fresh_mapping(bytes, 0);
      touch_pages(touched, bytes);
    });
    int populate_rc = 0;
    const double t_populate = milliseconds([&] {
      populated = fresh_mapping(bytes, 0);
      populate_rc = madvise(populated, bytes, MADV_POPULATE_WRITE);
    });
    const double t_mapped = milliseconds([&] { mapped = fresh_mapping(bytes, MAP_POPULATE); });
    const double t_huge = milliseconds([&] {
      huge = fresh_mapping(bytes, 0);
      madvise(huge, bytes, MADV_HUGEPAGE);
      touch_pages(huge, bytes);
    });
    const double t_memset = milliseconds([&] { std::memset(touched, 2, bytes); });
    std::printf("round %d: %8.1f %9.1f%s %7.1f %5.1f %7.1f\n", round + 1, t_touched, t_populate,
                populate_rc == 0 ? "" : " (unsupported)", t_mapped, t_huge, t_memset);
    for (char* p : {touched, populated, mapped, huge}) munmap(p, bytes);
  }
  return 0;
}
