// The gradient of a data-parallel step: each rank computes the gradient of its share of the global
// batch, and the ranks sum them before clipping and AdamW, so that every rank takes the same step.
// The sums start bucket by bucket while the backward pass of the step's last micro-batch still
// runs (the order a backward pass produces gradients: from the last parameters to the first), as
// PyTorch's DDP does, so that communication overlaps computation.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/Tensor.h>

#include "dist/group.h"

namespace dt {

class GradientSum {
 public:
  // `params`: what the optimizer updates, in any order.
  GradientSum(const dist::Group& ranks, std::vector<at::Tensor> params);
  ~GradientSum();
  GradientSum(const GradientSum&) = delete;
  GradientSum& operator=(const GradientSum&) = delete;

  // Before the backward pass of the last micro-batch of optimizer step `step`: from now on each
  // parameter's final gradient (what its .grad will hold after this pass) fills its bucket as it
  // arrives, and the buckets that are complete start summing, in bucket order.
  void arm(int64_t step);
  // After that backward pass, or in its place on a rank with nothing of the last micro-batch:
  // starts the buckets still waiting, then the step's loss and item count, waits for all, and
  // leaves the sum over the ranks in every .grad (a parameter no rank computed a gradient for keeps
  // none, as in one process). Returns the seconds it took.
  double finish(double& loss, int64_t& items, int64_t step);

 private:
  struct Bucket;
  void prepare(int64_t step);  // zeroed buckets, nothing arrived
  void arrived(size_t param, const at::Tensor& gradient);
  void start_complete_buckets();
  void remove_hooks();

  const dist::Group& ranks_;
  std::vector<at::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, offset_of_;  // per parameter
  std::vector<unsigned> hooks_;
  std::vector<bool> have_;  // per parameter: its final gradient is in its bucket
  size_t next_start_ = 0;   // the next bucket to start
  int64_t step_ = 0;
  bool armed_ = false;
};

}  // namespace dt
