// Reading and writing safetensors: zero-copy views against copies, and the streaming writer
// against one raw write of the same bytes. Prints medians and their ratios, all from one run.
// Usage: safetensors_bench [MiB per tensor (4)] [tensors (16)] [repeats (7)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <vector>

#include <ATen/ATen.h>

#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace {

double median_seconds(int repeats, const std::function<void()>& work) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    work();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t mib = argc > 1 ? std::atoll(argv[1]) : 4;
  const int count = argc > 2 ? std::atoi(argv[2]) : 16;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 7;
  const std::string path = (std::filesystem::temp_directory_path() / "dt_bench.safetensors").string();
  dt::NamedTensors tensors;
  for (int i = 0; i < count; ++i) tensors.emplace_back("t" + std::to_string(i), at::randn({mib << 18}));
  const std::string bytes = dt::serialize_safetensors(tensors);

  const double write_stream = median_seconds(repeats, [&] { dt::write_safetensors(path, tensors); });
  const double write_raw = median_seconds(repeats, [&] { dt::write_file_atomic(path, bytes); });
  double checksum = 0;
  // Each read sums every tensor, so that the views' pages are really read from the mapping.
  const double read_view = median_seconds(repeats, [&] {
    auto file = dt::SafetensorsFile::open(path);
    for (const auto& info : file->tensors()) checksum += file->get(info.name).sum().item<double>();
  });
  const double read_copy = median_seconds(repeats, [&] {
    auto file = dt::SafetensorsFile::open(path);
    for (const auto& info : file->tensors()) checksum += file->get(info.name).clone().sum().item<double>();
  });
  std::filesystem::remove(path);
  const double total_mib = static_cast<double>(mib * count);
  std::printf("%d tensors x %lld MiB F32, median of %d (checksum %.3g)\n", count, static_cast<long long>(mib), repeats, checksum);
  std::printf("write, streaming writer   %8.1f ms  %7.0f MiB/s\n", write_stream * 1e3, total_mib / write_stream);
  std::printf("write, one raw buffer     %8.1f ms  %7.0f MiB/s\n", write_raw * 1e3, total_mib / write_raw);
  std::printf("read + sum, views         %8.1f ms  %7.0f MiB/s\n", read_view * 1e3, total_mib / read_view);
  std::printf("read + sum, copies        %8.1f ms  %7.0f MiB/s\n", read_copy * 1e3, total_mib / read_copy);
  std::printf("ratio streaming/raw write %.2f, ratio copy/view read %.2f\n", write_stream / write_raw, read_copy / read_view);
  return 0;
}
