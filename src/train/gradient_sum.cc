#include "train/gradient_sum.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace dt {
namespace {

// DDP's bucket sizes: a small first bucket so that the first sum starts early, then larger ones
// (fewer collectives). A LoRA of the world's model fits in the first.
constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;
constexpr int64_t kBucketBytes = int64_t{25} << 20;

}  // namespace

struct GradientSum::Bucket {
  std::vector<size_t> members;
  int64_t numel = 0;
  size_t ready = 0;
  at::Tensor flat;
  dist::PendingSum pending;
};

GradientSum::GradientSum(const dist::Group& ranks, std::vector<at::Tensor> params)
    : ranks_(ranks), params_(std::move(params)), bucket_of_(params_.size()), offset_of_(params_.size()),
      have_(params_.size()) {
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {  // from the last parameter: the backward pass's order
    const at::Tensor& p = params_[k];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const int64_t cap = buckets_.size() <= 1 ? kFirstBucketBytes : kBucketBytes;
    if (buckets_.empty() || (bytes + size > cap && !buckets_.back().members.empty()) ||
        params_[buckets_.back().members[0]].scalar_type() != p.scalar_type()) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = static_cast<size_t>(b.numel);
    b.members.push_back(k);
    b.numel += p.numel();
    bytes += size;
  }
}

GradientSum::~GradientSum() { remove_hooks(); }

void GradientSum::remove_hooks() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
  hooks_.clear();
  armed_ = false;
}

void GradientSum::prepare(int64_t step) {
  for (Bucket& b : buckets_) {
    b.flat = torch::zeros({b.numel}, params_[b.members[0]].options().requires_grad(false));
    b.ready = 0;
    b.pending = {};
  }
  std::fill(have_.begin(), have_.end(), false);
  next_start_ = 0;
  step_ = step;
}

void GradientSum::arm(int64_t step) {
  prepare(step);
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](const at::Tensor& gradient) { arrived(k, gradient); }));
  armed_ = true;
}

void GradientSum::arrived(size_t k, const at::Tensor& gradient) {
  // The hook runs before the pass adds `gradient` to .grad: the final gradient is their sum (the
  // same addition, so the same bits).
  torch::NoGradGuard no_grad;
  const at::Tensor& p = params_[k];
  Bucket& b = buckets_[bucket_of_[k]];
  at::Tensor slot = b.flat.narrow(0, static_cast<int64_t>(offset_of_[k]), p.numel());
  slot.copy_((p.grad().defined() ? p.grad() + gradient : gradient).reshape({-1}));
  if (!have_[k]) {
    have_[k] = true;
    ++b.ready;
  }
  start_complete_buckets();
}

void GradientSum::start_complete_buckets() {
  while (next_start_ < buckets_.size() && buckets_[next_start_].ready == buckets_[next_start_].members.size()) {
    Bucket& b = buckets_[next_start_];
    b.pending = ranks_.start_sum(b.flat, "the gradient sum of step " + std::to_string(step_) + " (bucket " +
                                             std::to_string(next_start_ + 1) + " of " + std::to_string(buckets_.size()) + ")");
    ++next_start_;
  }
}

double GradientSum::finish(double& loss, int64_t& items, int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  if (!armed_) prepare(step);
  remove_hooks();
  torch::NoGradGuard no_grad;
  // Which parameters have a gradient on this rank: those the last pass reached, and those an
  // earlier micro-batch of the step did.
  std::vector<double> totals{loss, static_cast<double>(items)};
  for (size_t k = 0; k < params_.size(); ++k) {
    const at::Tensor& p = params_[k];
    const bool defined = have_[k] || p.grad().defined();
    totals.push_back(defined ? 1 : 0);
    if (have_[k]) continue;
    if (defined)
      buckets_[bucket_of_[k]].flat.narrow(0, static_cast<int64_t>(offset_of_[k]), p.numel()).copy_(p.grad().reshape({-1}));
    have_[k] = true;
    ++buckets_[bucket_of_[k]].ready;
  }
  start_complete_buckets();
  const at::Tensor summed_totals = torch::tensor(totals, torch::kDouble).to(params_.empty() ? c10::kCPU : params_[0].device());
  dist::PendingSum totals_sum = ranks_.start_sum(summed_totals, "the loss sum of step " + std::to_string(step));
  for (Bucket& b : buckets_) b.pending.wait();
  totals_sum.wait();

  const at::Tensor on_cpu = summed_totals.cpu();
  const double* sum = on_cpu.data_ptr<double>();
  loss = sum[0];
  items = static_cast<int64_t>(sum[1]);
  for (size_t k = 0; k < params_.size(); ++k) {
    at::Tensor& grad = const_cast<at::Tensor&>(params_[k]).mutable_grad();
    if (sum[2 + k] == 0) {
      grad = at::Tensor();
      continue;
    }
    const at::Tensor slot = buckets_[bucket_of_[k]].flat.narrow(0, static_cast<int64_t>(offset_of_[k]), params_[k].numel());
    if (grad.defined())
      grad.copy_(slot.view_as(grad));
    else
      grad = slot.view_as(params_[k]).clone();
  }
  for (Bucket& b : buckets_) b.flat = at::Tensor();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace dt
