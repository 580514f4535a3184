// `deltatrain forward --component zimage-transformer` (Family::forward): golden contract of
// shared/golden/README.md (zimage_transformer). Also writes the intermediates under the golden's
// `X.mid.*` names, so `compare.py --all` can localise a mismatch.
#include <torch/torch.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "lora/file.h"
#include "models/zimage/family.h"
#include "models/zimage/weights.h"
#include "nn/attention.h"

namespace dt::zimage {

void forward(const ForwardArgs& args) {
  nn::set_explicit_attention(args.explicit_attention);
  ZImageTransformer model = load_transformer(args.model, LoadOptions{});
  lora::merge_lora_files(*model, lora_keys(), args.loras);  // --lora FILE[:STRENGTH]

  auto io = SafetensorsFile::open(args.inputs);
  auto input = [&](const std::string& name) { return args.input(*io, name).to(at::kFloat); };
  std::vector<at::Tensor> x, caps;
  for (int i = 0; io->contains(args.in("x." + std::to_string(i))); ++i) {
    x.push_back(input("x." + std::to_string(i)));
    caps.push_back(input("cap_feats." + std::to_string(i)));
  }
  if (x.empty()) throw file_error(args.inputs, "no input tensor '" + args.in("x.0") + "'");
  at::Tensor t = input("t");

  torch::NoGradGuard no_grad;
  NamedTensors mid;
  std::vector<at::Tensor> out = model->forward(x, t, caps, 0, &mid);
  NamedTensors results;
  for (size_t i = 0; i < out.size(); ++i) results.emplace_back(args.out(std::to_string(i)), out[i]);
  for (auto& [name, value] : mid) results.emplace_back(args.mid_prefix() + name, value);
  write_safetensors(args.output, results);
}

}  // namespace dt::zimage
