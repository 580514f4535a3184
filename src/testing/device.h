// The device the model tests run on, and the golden tolerances there. DT_TEST_DEVICE=cuda (or
// cuda:N) moves the transformer goldens, the LoRA goldens, block offloading and every run the
// trainer, transfer and sampler tests make (testing::tiny_run) onto the GPU; scripts/device.sh
// runs them so. Unset or "cpu": everything on the CPU, as in CI.
//
// Tolerances against the goldens (fp32 references computed on the CPU):
// - fp32 on the CPU, and on CUDA without TF32 (the default here; LibTorch's own default for
//   matmul, and switched off for cuDNN convolutions too): max|c − g| ≤ 1e-4 + 1e-4·max|g| —
//   different kernels change only the summation order.
// - fp32 on CUDA with DT_TEST_TF32=1: matmul and convolution inputs rounded to TF32's 10-bit
//   mantissa (relative 2^-11 per operand), compounded over the 4 blocks of the golden models:
//   1e-3 + 5e-3·max|g|.
// - bf16 (8 significant bits) keeps the bounds stated in each bf16 test, on every device.
#pragma once
#include <cstdlib>
#include <string>

#include <ATen/Context.h>
#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "core/model_api.h"

namespace dt::testing {

inline bool test_tf32() {
  const char* v = std::getenv("DT_TEST_TF32");
  return v && std::string(v) == "1";
}

inline std::string test_device_name() {
  const char* v = std::getenv("DT_TEST_DEVICE");
  return v && *v ? v : "cpu";
}

inline c10::Device test_device() {
  static const c10::Device device = [] {
    const c10::Device d(test_device_name());
    if (d.is_cuda()) {
      at::globalContext().setAllowTF32CuBLAS(test_tf32());
      at::globalContext().setAllowTF32CuDNN(test_tf32());
    }
    return d;
  }();
  return device;
}

// Weights in fp32 (or `dtype`) on the test device.
inline LoadOptions test_load_options(c10::ScalarType dtype = c10::kFloat) { return LoadOptions{test_device(), dtype}; }

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.cpu().to(at::kDouble) - b.cpu().to(at::kDouble)).abs().max().item<double>();
}

// The fp32 golden tolerance on the test device (above).
inline double golden_tolerance(const at::Tensor& g) {
  const double scale = g.abs().max().item<double>();
  return test_device().is_cuda() && test_tf32() ? 1e-3 + 5e-3 * scale : 1e-4 + 1e-4 * scale;
}

}  // namespace dt::testing
