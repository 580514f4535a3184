#include "nn/checkpoint.h"

#include <torch/torch.h>

#include "nn/linear.h"

namespace dt::nn {
namespace {

thread_local bool recomputing = false;

struct Recomputing {
  Recomputing() : was(recomputing) { recomputing = true; }
  ~Recomputing() { recomputing = was; }
  bool was;
};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Holds a block's weights on the device for its scope (released on exceptions too).
class Resident {
 public:
  Resident(const Residency& r, bool backward) : r_(r) {
    if (r_.acquire) r_.acquire(backward);
  }
  ~Resident() {
    if (r_.release) r_.release();
  }

 private:
  const Residency& r_;
};

struct BlockHolder : torch::CustomClassHolder {
  BlockFn fn;
  Residency residency;
  size_t num_inputs = 0;
  std::vector<size_t> slots;  // block-input index of each defined input, in order
  std::vector<at::Tensor> trainable;
  at::Generator generator;
  at::Tensor generator_state;

  std::vector<at::Tensor> inputs_from(const std::vector<at::Tensor>& defined) const {
    std::vector<at::Tensor> inputs(num_inputs);
    for (size_t i = 0; i < slots.size(); ++i) inputs[slots[i]] = defined[i];
    return inputs;
  }
};

// The defined inputs and the trainable tensors are passed as one TensorList so autograd links the
// output to all of them; `slots` says where each of the first tensors goes among the block inputs
// (undefined inputs cannot enter autograd and are rebuilt as undefined).
struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList tensors, c10::intrusive_ptr<BlockHolder> holder) {
    std::vector<at::Tensor> defined(tensors.begin(), tensors.begin() + static_cast<int64_t>(holder->slots.size()));
    ctx->save_for_backward(defined);
    ctx->saved_data["holder"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["num_tensors"] = static_cast<int64_t>(tensors.size());
    torch::NoGradGuard no_grad;
    Resident resident(holder->residency, /*backward=*/false);
    return {holder->fn(holder->inputs_from(defined))};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<BlockHolder>(ctx->saved_data["holder"].toCapsule());
    const auto num_tensors = static_cast<size_t>(ctx->saved_data["num_tensors"].toInt());
    variable_list saved = ctx->get_saved_variables();
    std::vector<at::Tensor> defined;
    std::vector<at::Tensor> wrt;  // tensors whose gradient is returned
    std::vector<size_t> wrt_slot;
    for (size_t i = 0; i < saved.size(); ++i) {
      at::Tensor x = saved[i].detach().requires_grad_(saved[i].requires_grad());
      if (x.requires_grad()) {
        wrt.push_back(x);
        wrt_slot.push_back(i);
      }
      defined.push_back(x);
    }
    const std::vector<at::Tensor>& trainable = holder->trainable;
    for (size_t i = 0; i < trainable.size(); ++i)
      if (trainable[i].requires_grad()) {
        wrt.push_back(trainable[i]);
        wrt_slot.push_back(saved.size() + i);
      }
    Resident resident(holder->residency, /*backward=*/true);  // until the gradients below are computed
    at::Tensor output;
    {
      // Replay the generator as it was at forward time, then leave it where backward found it.
      at::Tensor now;
      if (holder->generator.defined()) {
        now = holder->generator.get_state();
        holder->generator.set_state(holder->generator_state);
      }
      torch::AutoGradMode grad_on(true);
      Recomputing recompute;
      output = holder->fn(holder->inputs_from(defined));
      if (holder->generator.defined()) holder->generator.set_state(now);
    }
    variable_list grads(num_tensors + 1);  // + the holder argument
    if (wrt.empty() || !output.requires_grad()) return grads;
    variable_list computed = torch::autograd::grad({output}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                                   /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < wrt.size(); ++i) grads[wrt_slot[i]] = computed[i];
    return grads;
  }
};

}  // namespace

bool recomputing_block() { return recomputing; }

at::Tensor checkpoint(const BlockFn& fn, const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& trainable,
                      const Residency& residency) {
  bool needs_grad = false;
  for (const auto& t : inputs) needs_grad |= t.defined() && t.requires_grad();
  for (const auto& t : trainable) needs_grad |= t.requires_grad();
  if (!torch::GradMode::is_enabled() || !needs_grad) {
    Resident resident(residency, /*backward=*/false);
    return fn(inputs);
  }

  auto holder = c10::make_intrusive<BlockHolder>();
  holder->fn = fn;
  holder->residency = residency;
  holder->num_inputs = inputs.size();
  holder->trainable = trainable;
  std::vector<at::Tensor> all;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) {
      holder->slots.push_back(i);
      all.push_back(inputs[i]);
    }
  if (!all.empty()) {
    holder->generator = at::globalContext().defaultGenerator(all.front().device());
    holder->generator_state = holder->generator.get_state();
  }
  all.insert(all.end(), trainable.begin(), trainable.end());
  return CheckpointFunction::apply(at::TensorList(all), holder)[0];
}

std::vector<at::Tensor> trainable_tensors(const torch::nn::Module& module) {
  std::vector<at::Tensor> out;
  for (const auto& p : module.parameters())
    if (p.requires_grad()) out.push_back(p);
  auto add_lora = [&](const torch::nn::Module& m) {
    auto* linear = dynamic_cast<const LinearImpl*>(&m);
    if (!linear || !linear->lora) return;
    for (const auto& t : {linear->lora->down, linear->lora->up})
      if (t.defined() && t.requires_grad()) out.push_back(t);
  };
  add_lora(module);
  for (const auto& m : module.modules(/*include_self=*/false)) add_lora(*m);
  return out;
}

}  // namespace dt::nn
