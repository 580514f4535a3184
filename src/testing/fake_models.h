// Small stand-ins for a family's VAE and text encoder, for tests and benchmarks of the data
// caches: real functions of their inputs, identities read from their "model files".
#pragma once
#include <torch/torch.h>

#include "io/atomic_file.h"
#include "lora/keymap.h"
#include "models/family.h"

namespace dt::testing {

inline int vae_loads = 0, text_loads = 0;  // models loaded so far

// x0 = 8×8 average pool of the image: a real function of the pixels, so a wrong image, crop or
// background shows up in the cached latent.
class FakeVae : public Autoencoder {
 public:
  explicit FakeVae(std::string id) : id_(std::move(id)) {}
  at::Tensor encode(const at::Tensor& images) override { return torch::avg_pool2d(images, 8); }
  at::Tensor decode(const at::Tensor& latents) override { return torch::upsample_nearest2d(latents, {}, {{8.0, 8.0}}); }
  std::string identity() const override { return id_; }

 private:
  std::string id_;
};

// Features: one row per byte of the prompt (plus one), so each caption has its own value.
class FakeTextEncoder : public TextEncoder {
 public:
  explicit FakeTextEncoder(std::string id) : id_(std::move(id)) {}
  std::vector<TextFeatures> encode(const std::vector<std::string>& prompts) override {
    std::vector<TextFeatures> out;
    for (const auto& p : prompts) {
      at::Tensor t = torch::zeros({int64_t(p.size()) + 1, 4});
      for (size_t i = 0; i < p.size(); ++i) t[int64_t(i)][0] = float(static_cast<unsigned char>(p[i]));
      t[int64_t(p.size())][1] = float(id_.size());
      out.push_back(t);
    }
    return out;
  }
  std::string identity() const override { return id_; }

 private:
  std::string id_;
};

// Model "files" hold their identities, so changing a file changes the model.
class FakeFamily : public Family {
 public:
  std::string name() const override { return "fake"; }
  bool detect(const Checkpoint&) const override { return false; }
  std::unique_ptr<Denoiser> load_transformer(const std::string&, const LoadOptions&) const override { return nullptr; }
  std::string transformer_identity(const std::string& path) const override { return read_file(path); }
  std::unique_ptr<TextEncoder> load_text_encoder(const std::string& path, const LoadOptions&) const override {
    ++text_loads;
    return std::make_unique<FakeTextEncoder>(read_file(path));
  }
  std::unique_ptr<Autoencoder> load_vae(const std::string& path, const LoadOptions&) const override {
    ++vae_loads;
    return std::make_unique<FakeVae>(read_file(path));
  }
  int pixel_multiple() const override { return 16; }
  std::vector<int64_t> latent_shape(int64_t h, int64_t w) const override { return {3, h / 8, w / 8}; }
  std::vector<double> sigmas(int, int64_t, int64_t) const override { return {}; }
  double dynamic_shift(int64_t, int64_t) const override { return 1.0; }
  std::map<std::string, std::string> lora_presets() const override { return {}; }
  const lora::KeyMap& lora_keys() const override {
    static const lora::KeyMap none;
    return none;
  }
  ChatTemplate chat_template() const override { return ChatTemplate::none; }
  FamilyDefaults defaults() const override { return {}; }
  std::string onetrainer_model_type() const override { return "FAKE"; }
  std::string describe(const Checkpoint&) const override { return ""; }
  void write_tiny_pipeline(const std::string&, uint64_t, bool, const std::string&) const override {}
  std::string forward_component() const override { return "fake"; }
  void forward(const ForwardArgs&) const override {}
};

}  // namespace dt::testing
