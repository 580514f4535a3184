#include "nn/offload.h"

#include <optional>
#include <set>

#include <torch/torch.h>

#include "core/error.h"
#include "nn/linear.h"

#ifdef DT_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace dt::nn {

struct BlockOffloader::Block {
  std::shared_ptr<torch::nn::Module> module;
  std::vector<at::Tensor> live;         // the block's frozen tensors, as the model holds them
  std::vector<at::Tensor> host;         // their values in host memory
  std::vector<at::Tensor> placeholder;  // what `live` holds while away: empty, so a stray use fails loudly
  std::vector<at::Tensor> copies;       // device copies while fetched
  bool fetched = false;
#ifdef DT_CUDA
  std::optional<at::cuda::CUDAEvent> copied;  // recorded on the side stream after the copies
#endif
};

struct BlockOffloader::Streams {
#ifdef DT_CUDA
  explicit Streams(c10::Device device) : side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}
  c10::cuda::CUDAStream side;
#endif
};

namespace {

std::vector<at::Tensor> frozen_tensors(torch::nn::Module& block) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& p : block.parameters())
    if (!p.requires_grad()) out.push_back(p);
  for (const at::Tensor& b : block.buffers()) out.push_back(b);
  return out;
}

void move(const at::Tensor& t, c10::Device device) {
  if (t.defined() && t.device() != device) t.set_data(t.data().to(device));
}

}  // namespace

BlockOffloader::BlockOffloader(torch::nn::Module& model, std::vector<std::shared_ptr<torch::nn::Module>> blocks,
                               c10::Device device)
    : device_(device) {
  torch::NoGradGuard no_grad;
#ifdef DT_CUDA
  if (device.is_cuda()) {
    if (!device.has_index()) device_ = c10::Device(c10::kCUDA, c10::cuda::current_device());
    streams_ = std::make_unique<Streams>(device_);
  }
#endif
  std::set<const c10::TensorImpl*> offloaded;
  for (auto& module : blocks) {
    auto b = std::make_unique<Block>();
    b->module = module;
    b->live = frozen_tensors(*module);
    for (const at::Tensor& t : b->live) {
      at::Tensor host = t.data().to(c10::kCPU);
      if (streams_) host = host.pin_memory();  // pageable memory would make the copies synchronous
      b->placeholder.push_back(at::empty({0}, host.options().device(device_)));
      t.set_data(b->placeholder.back());
      b->host.push_back(std::move(host));
      offloaded.insert(t.unsafeGetTensorImpl());
    }
    blocks_.push_back(std::move(b));
  }
  for (const at::Tensor& p : model.parameters())
    if (!offloaded.count(p.unsafeGetTensorImpl())) move(p, device_);
  for (const at::Tensor& b : model.buffers())
    if (!offloaded.count(b.unsafeGetTensorImpl())) move(b, device_);
  for (const auto& m : model.modules(/*include_self=*/true))
    if (auto* linear = dynamic_cast<LinearImpl*>(m.get()); linear && linear->lora) {
      move(linear->lora->down, device_);
      move(linear->lora->up, device_);
    }
}

BlockOffloader::~BlockOffloader() = default;

long BlockOffloader::index_of(const torch::nn::Module& block) const {
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i]->module.get() == &block) return static_cast<long>(i);
  return -1;
}

void BlockOffloader::start_fetch(Block& b) {
#ifdef DT_CUDA
  if (streams_) {
    c10::cuda::CUDAStreamGuard on_side(streams_->side);
    for (const at::Tensor& h : b.host) b.copies.push_back(h.to(h.options().device(device_), /*non_blocking=*/true));
    b.copied.emplace();
    b.copied->record(streams_->side);
  } else
#endif
    for (const at::Tensor& h : b.host) b.copies.push_back(h.to(h.options().device(device_), /*non_blocking=*/false, /*copy=*/true));
  b.fetched = true;
  ++fetches_;
  max_resident_ = std::max(max_resident_, resident());
}

void BlockOffloader::acquire(const torch::nn::Module& block, bool backward) {
  const long i = index_of(block);
  if (i < 0) throw Error("block offloading: a block that is not offloaded was asked for");
  Block& b = *blocks_[static_cast<size_t>(i)];
  torch::NoGradGuard no_grad;
  if (!b.fetched) start_fetch(b);
#ifdef DT_CUDA
  if (streams_) b.copied->block(c10::cuda::getCurrentCUDAStream(device_.index()));
#endif
  for (size_t k = 0; k < b.live.size(); ++k) b.live[k].set_data(b.copies[k]);
  const long next = backward ? i - 1 : i + 1;
  if (next >= 0 && next < static_cast<long>(blocks_.size()) && !blocks_[static_cast<size_t>(next)]->fetched)
    start_fetch(*blocks_[static_cast<size_t>(next)]);
}

void BlockOffloader::release(const torch::nn::Module& block) {
  const long i = index_of(block);
  if (i < 0) return;
  Block& b = *blocks_[static_cast<size_t>(i)];
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < b.live.size(); ++k) {
#ifdef DT_CUDA
    // The copies were made on the side stream; the kernels that read them run on the compute
    // stream, so their memory may be reused only after that stream has passed this point.
    if (streams_)
      c10::cuda::CUDACachingAllocator::recordStream(b.copies[k].storage().data_ptr(),
                                                    c10::cuda::getCurrentCUDAStream(device_.index()));
#endif
    b.live[k].set_data(b.placeholder[k]);
  }
  b.copies.clear();
  b.fetched = false;
}

Residency BlockOffloader::residency(const torch::nn::Module& block) {
  if (!holds(block)) return {};
  const torch::nn::Module* m = &block;
  return {[this, m](bool backward) { acquire(*m, backward); }, [this, m] { release(*m); }};
}

size_t BlockOffloader::size() const { return blocks_.size(); }
size_t BlockOffloader::max_resident() const { return max_resident_; }
size_t BlockOffloader::fetches() const { return fetches_; }
size_t BlockOffloader::resident() const {
  size_t n = 0;
  for (const auto& b : blocks_) n += b->fetched;
  return n;
}

ResidentBlock::ResidentBlock(BlockOffloader* offloader, const torch::nn::Module& block)
    : offloader_(offloader && offloader->holds(block) ? offloader : nullptr), block_(block) {
  if (!offloader_) return;
  if (torch::GradMode::is_enabled())
    throw Error("model.offload_blocks needs model.gradient_checkpointing = true to train: a plain backward pass "
                "would keep every offloaded block on the device");
  offloader_->acquire(block_, /*backward=*/false);
}

ResidentBlock::~ResidentBlock() {
  if (offloader_) offloader_->release(block_);
}

}  // namespace dt::nn
