// Block offloading (model.offload_blocks): the frozen weights of some transformer blocks live in
// host memory (pinned when the device is a GPU) and come to the device only while their block runs,
// so a model larger than the card trains on it. The copy of the next block starts on a side stream
// while the current one computes. Under gradient checkpointing a block runs twice — in the forward
// pass and in its recompute during backward — and is brought in both times, in the order of use
// (forward: ascending, backward: descending), so at most two offloaded blocks are on the device at once.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "nn/checkpoint.h"

namespace torch::nn {
class Module;
}

namespace dt::nn {

class BlockOffloader {
 public:
  // Moves every tensor of `model` (parameters, buffers and LoRA tensors of dt::nn::Linear layers)
  // to `device`, except the frozen tensors (parameters that need no gradient, and buffers) of
  // `blocks`, which stay in host memory until their block runs. `blocks` are submodules of `model`
  // in their order of use in the forward pass.
  BlockOffloader(torch::nn::Module& model, std::vector<std::shared_ptr<torch::nn::Module>> blocks, c10::Device device);
  ~BlockOffloader();
  BlockOffloader(const BlockOffloader&) = delete;
  BlockOffloader& operator=(const BlockOffloader&) = delete;

  bool holds(const torch::nn::Module& block) const { return index_of(block) >= 0; }
  // Brings `block` to the device (waiting for its copy if one is under way) and starts the copy of
  // the offloaded block used after it: the next one in the forward pass, the previous one in backward.
  void acquire(const torch::nn::Module& block, bool backward);
  // Sends `block` back: its device copies are dropped once the work queued on them is done.
  void release(const torch::nn::Module& block);
  // acquire / release of `block` for nn::checkpoint; empty when this offloader does not hold it.
  Residency residency(const torch::nn::Module& block);

  size_t size() const;
  size_t resident() const;      // offloaded blocks on the device now (fetched or being fetched)
  size_t max_resident() const;  // the most there ever were at once
  size_t fetches() const;       // copies to the device so far

 private:
  struct Block;
  long index_of(const torch::nn::Module& block) const;
  void start_fetch(Block& b);

  c10::Device device_;
  std::vector<std::unique_ptr<Block>> blocks_;
  size_t max_resident_ = 0, fetches_ = 0;
  struct Streams;
  std::unique_ptr<Streams> streams_;  // the side stream on CUDA; null on other devices
};

// Runs `fn` on a block outside gradient checkpointing with the block's weights on the device.
// Training needs checkpointing: the autograd graph of a plain forward keeps the weights until
// backward, which defeats offloading; so gradients must be off here (dt::Error otherwise).
class ResidentBlock {
 public:
  ResidentBlock(BlockOffloader* offloader, const torch::nn::Module& block);
  ~ResidentBlock();
  ResidentBlock(const ResidentBlock&) = delete;
  ResidentBlock& operator=(const ResidentBlock&) = delete;

 private:
  BlockOffloader* offloader_;
  const torch::nn::Module& block_;
};

}  // namespace dt::nn
