// VAE encode throughput, fp32 vs bf16, against the convolution rate of this machine measured in
// the same run; and the peak memory of an encode with the real FLUX VAE shape.
//
//   build/vae_bench [--size 512 (0: skip part 1)] [--repeats 3] [--peak-sizes 256,512] [--threads N]
//
// Part 1: a mid-size AutoencoderKL (block_out 64, 128, 256, 256; the real one is 128, 256, 512,
// 512) encodes a size² image; its time is set against a single 3×3 convolution of the same
// arithmetic shape as its heaviest layers, so the ratio says how close the whole encoder runs to
// the bare convolution rate.
// Part 2: the real shape (random weights, fp32) encodes and decodes each --peak-sizes image once;
// the growth of the process's peak resident memory (VmHWM, reset through /proc/self/clear_refs)
// is reported.
#include <malloc.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/runtime.h"
#include "vae/load.h"
#include "vae/random_vae.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Best of `repeats` timings of f (after one warm-up call).
template <typename F>
double best_time(int repeats, F&& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

// Multiply-adds ×2 of every convolution and attention product of the encoder for a size² image.
double encoder_flops(const dt::VaeConfig& c, int64_t size) {
  double flops = 0;
  auto conv = [&](double cin, double cout, double k, double area) { flops += 2 * cin * cout * k * k * area; };
  double area = static_cast<double>(size) * size;
  const auto& ch = c.block_out_channels;
  conv(c.in_channels, ch[0], 3, area);
  for (size_t i = 0; i < ch.size(); ++i) {
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      const double cin = j == 0 ? (i == 0 ? ch[0] : ch[i - 1]) : ch[i];
      conv(cin, ch[i], 3, area);
      conv(ch[i], ch[i], 3, area);
      if (cin != ch[i]) conv(cin, ch[i], 1, area);
    }
    if (i + 1 < ch.size()) area /= 4, conv(ch[i], ch[i], 3, area);
  }
  const double last = ch.back();
  for (int r = 0; r < 4; ++r) conv(last, last, 3, area);  // two mid-block resnets
  flops += 4 * 2 * last * last * area + 2 * 2 * area * area * last;  // q, k, v, out; q·kᵀ and p·v
  conv(last, 2 * c.latent_channels, 3, area);
  return flops;
}

int64_t peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

int64_t current_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

dt::vae::AutoencoderKL random_vae(const dt::VaeConfig& c, at::ScalarType dtype, const std::string& dir) {
  dt::vae::write_random_vae(dir, c, 1);
  dt::LoadOptions o;
  o.compute_dtype = dtype;
  return dt::vae::load_autoencoder(dir, o);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 512;
  int repeats = 3;
  std::vector<int64_t> peak_sizes = {256, 512};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--size") size = std::stoll(value);
    else if (flag == "--repeats") repeats = std::stoi(value);
    else if (flag == "--threads") setenv("DT_THREADS", value.c_str(), 1);
    else if (flag == "--peak-sizes") {
      peak_sizes.clear();
      std::stringstream list(value);
      for (std::string s; std::getline(list, s, ',');) peak_sizes.push_back(std::stoll(s));
    }
  }
  // Every block above 1 MiB is mapped and unmapped on its own (glibc otherwise raises this
  // threshold after large frees and keeps freed blocks resident), so VmHWM follows live tensors.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  dt::init_runtime();
  torch::NoGradGuard no_grad;
  const std::string dir = (std::filesystem::temp_directory_path() / ("dt_vae_bench_" + std::to_string(getpid()))).string();
  std::printf("threads %d, LibTorch %s\n", at::get_num_threads(), TORCH_VERSION);

  // Part 1 (skipped with --size 0): mid-size encode vs the bare convolution rate, fp32 and bf16.
  dt::VaeConfig mid = dt::vae::tiny_vae_config(dt::VaeKind::kAutoencoderKL);
  mid.block_out_channels = mid.decoder_block_out_channels = {64, 128, 256, 256};
  mid.norm_num_groups = 32;
  const double flops = encoder_flops(mid, std::max<int64_t>(size, 1));
  if (size > 0) std::printf("mid-size encode %lldx%lld: %.1f GFLOP\n", (long long)size, (long long)size, flops / 1e9);
  if (size > 0) std::printf("%-6s %12s %14s %16s %10s\n", "dtype", "encode s", "encode GFLOP/s", "conv3x3 GFLOP/s", "ratio");
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    if (size == 0) break;
    auto vae = random_vae(mid, dtype, dir + "/mid");
    const at::Tensor image = torch::rand({1, 3, size, size}) * 2 - 1;
    const double t_encode = best_time(repeats, [&] { vae->encode(image); });
    // The encoder's most common layer: 3×3, 128 → 128 channels at a quarter of the image area.
    const int64_t side = size / 2, channels = 128;
    const at::Tensor x = torch::randn({1, channels, side, side}).to(dtype);
    const at::Tensor w = (torch::randn({channels, channels, 3, 3}) / 34.0).to(dtype);
    const double t_conv = best_time(repeats, [&] { at::conv2d(x, w, {}, 1, 1); });
    const double conv_rate = 2.0 * channels * channels * 9 * side * side / t_conv / 1e9;
    const double encode_rate = flops / t_encode / 1e9;
    std::printf("%-6s %12.3f %14.1f %16.1f %10.2f\n", dtype == at::kFloat ? "fp32" : "bf16", t_encode, encode_rate,
                conv_rate, encode_rate / conv_rate);
  }

  // Part 2: peak memory of one fp32 encode and decode with the real block widths.
  dt::VaeConfig real = mid;
  real.block_out_channels = real.decoder_block_out_channels = {128, 256, 512, 512};
  auto vae = random_vae(real, at::kFloat, dir + "/real");
  std::printf("real-shape fp32: peak resident memory above the loaded model (one map = 128 channels at full size)\n");
  for (int64_t s : peak_sizes) {
    const double map_mib = 128.0 * s * s * 4 / (1 << 20);
    const at::Tensor image = torch::rand({1, 3, s, s}) * 2 - 1;
    const at::Tensor z = torch::randn({1, real.latent_channels, s / 8, s / 8});
    for (const char* what : {"encode", "decode"}) {
      const int64_t base = current_rss_kib();
      reset_peak_rss();
      auto t0 = Clock::now();
      if (what[0] == 'e') vae->encode(image);
      else vae->decode(z);
      const double t = seconds_since(t0);
      const double peak_mib = (peak_rss_kib() - base) / 1024.0;
      std::printf("  %s %5lld²: %8.0f MiB = %.2f maps of %.0f MiB; %.1f s\n", what, (long long)s, peak_mib, peak_mib / map_mib,
                  map_mib, t);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
