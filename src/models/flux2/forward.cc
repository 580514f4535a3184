// `deltatrain forward --component flux2-transformer` (Family::forward): golden contract of shared/golden/README.md
// (flux2_transformer). Also writes the intermediates under the golden's `X.mid.*` names, so
// `compare.py --all` can localise a mismatch.
#include <torch/torch.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "lora/file.h"
#include "models/flux2/family.h"
#include "models/flux2/weights.h"
#include "nn/attention.h"

namespace dt::flux2 {

void forward(const ForwardArgs& args) {
  nn::set_explicit_attention(args.explicit_attention);
  Flux2Transformer model = load_transformer(args.model, LoadOptions{});
  lora::merge_lora_files(*model, lora_keys(), args.loras);  // --lora FILE[:STRENGTH]

  auto io = SafetensorsFile::open(args.inputs);
  auto input = [&](const std::string& name) { return args.input(*io, name); };
  // The ids may be [N, 4] or, as the pipeline builds them, [B, N, 4]; the model uses item 0's.
  auto ids = [&](const std::string& name) {
    at::Tensor t = input(name);
    return t.dim() == 3 ? t[0] : t;
  };
  at::Tensor hidden = input("hidden_states").to(at::kFloat), text = input("encoder_hidden_states").to(at::kFloat);
  at::Tensor timestep = input("timestep").to(at::kFloat);

  torch::NoGradGuard no_grad;
  NamedTensors mid;
  at::Tensor out = model->forward(hidden, text, timestep, ids("img_ids"), ids("txt_ids"), &mid);
  NamedTensors results = {{args.out(""), out}};
  for (auto& [name, value] : mid) results.emplace_back(args.mid_prefix() + name, value);
  write_safetensors(args.output, results);
}

}  // namespace dt::flux2
