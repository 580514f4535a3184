// Gradient checkpointing: run a block without keeping its activations and recompute them in the
// backward pass (LibTorch C++ has no checkpoint utility). Trades one extra forward per block for
// the memory of its intermediate activations.
#pragma once
#include <functional>
#include <vector>

#include <ATen/Tensor.h>

namespace torch::nn {
class Module;
}

namespace dt::nn {

using BlockFn = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

// How a block's weights come to the device around each run of the block (block offloading,
// nn/offload.h): `acquire(backward)` before the forward and before the recompute in backward,
// `release()` after the forward and once the recomputed graph has given its gradients. Empty: the
// weights stay where they are.
struct Residency {
  std::function<void(bool backward)> acquire;
  std::function<void()> release;
};

// Returns fn(inputs). When gradients are being recorded, the activations inside fn are dropped and
// recomputed during backward; `trainable` must list every tensor fn uses that may need a gradient
// but is not among `inputs` (the block's parameters and LoRA tensors: trainable_tensors()), so the
// recomputed graph can hand their gradients back. Inputs may be undefined tensors. The random
// generator of the inputs' device is replayed, so dropout inside fn draws the same masks. fn must
// not depend on state that changes between forward and backward (e.g. the LoRA switch).
at::Tensor checkpoint(const BlockFn& fn, const std::vector<at::Tensor>& inputs,
                      const std::vector<at::Tensor>& trainable, const Residency& residency = {});

// True on this thread while checkpoint() re-runs a block in the backward pass: what the recompute
// keeps for its backward lives only until the block's gradients are computed.
bool recomputing_block();

// The parameters of a module tree plus the LoRA tensors of its dt::nn::Linear layers that require
// gradients.
std::vector<at::Tensor> trainable_tensors(const torch::nn::Module& module);

}  // namespace dt::nn
