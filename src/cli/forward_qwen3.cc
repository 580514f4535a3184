// `deltatrain forward --component qwen3`: golden contract of shared/golden/README.md (qwen3):
// every hidden state and, when the checkpoint has an LM head, the logits.
#include <torch/torch.h>

#include "cli/forward.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "nn/attention.h"
#include "text/qwen3.h"

namespace dt {

void forward_qwen3(const ForwardArgs& args) {
  if (!args.loras.empty()) throw Error("--lora is not supported for qwen3");
  nn::set_explicit_attention(args.explicit_attention);
  auto encoder = Qwen3Encoder::load(args.model, LoadOptions{});
  auto io = SafetensorsFile::open(args.inputs);
  auto input = [&](const std::string& name) { return args.input(*io, name); };
  at::Tensor ids = input("input_ids");
  at::Tensor mask = io->contains(args.in("attention_mask")) ? input("attention_mask") : torch::ones_like(ids);
  if (ids.dim() != 2 || mask.sizes() != ids.sizes())
    throw file_error(args.inputs, "input_ids and attention_mask must both be [batch, tokens]");
  if (at::isFloatingType(ids.scalar_type())) throw file_error(args.inputs, "input_ids must be integers");

  torch::NoGradGuard no_grad;
  std::vector<int64_t> all;
  for (int64_t i = 0; i <= encoder->config.num_hidden_layers; ++i) all.push_back(i);
  std::vector<at::Tensor> states = encoder->hidden_states(ids, mask, all);
  NamedTensors results;
  for (size_t i = 0; i < states.size(); ++i) results.emplace_back(args.out("hidden_states." + std::to_string(i)), states[i]);
  if (encoder->has_lm_head()) results.emplace_back(args.out("logits"), encoder->logits(states.back()));
  write_safetensors(args.output, results);
}

}  // namespace dt
