// `deltatrain forward --component vae-encode | vae-decode` (shared/golden/README.md): either VAE,
// told apart by its weights. The encode also writes what a family's pipeline derives from the
// posterior mean (Family::vae_pipeline_outputs: pipe.image_latents, pipe.image_tokens).
#include <torch/torch.h>

#include "cli/forward.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/family.h"
#include "vae/load.h"

namespace dt {
namespace {

at::Tensor input(const ForwardArgs& args, const std::string& name) {
  return args.input(*SafetensorsFile::open(args.inputs), name).to(at::kFloat);
}

at::Tensor f32(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat).contiguous(); }

}  // namespace

void forward_vae_encode(const ForwardArgs& args) {
  vae::AutoencoderKL model = vae::load_autoencoder(args.model);
  const at::Tensor image = input(args, "image");
  const vae::Posterior post = model->encode(image);
  NamedTensors out = {{args.out("enc.parameters"), f32(post.parameters)},
                      {args.out("enc.mean"), f32(post.mean)},
                      {args.out("enc.logvar"), f32(post.logvar)}};
  for (const Family* family : families())
    for (auto& output : family->vae_pipeline_outputs(*model, post.mean)) out.push_back(std::move(output));
  write_safetensors(args.output, out);
}

void forward_vae_decode(const ForwardArgs& args) {
  vae::AutoencoderKL model = vae::load_autoencoder(args.model);
  write_safetensors(args.output, {{args.out("dec"), f32(model->decode(input(args, "z")))}});
}

}  // namespace dt
