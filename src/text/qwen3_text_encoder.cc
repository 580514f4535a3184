#include "text/qwen3_text_encoder.h"

#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "core/hash.h"
#include "io/checkpoint.h"

namespace dt {

Qwen3TextEncoder::Qwen3TextEncoder(const std::string& path, const LoadOptions& options, Qwen3Prompting prompting)
    : prompting_(std::move(prompting)) {
  namespace fs = std::filesystem;
  const fs::path tokenizer_dir = fs::path(path) / "tokenizer", encoder_dir = fs::path(path) / "text_encoder";
  std::error_code ec;
  if (!fs::is_directory(tokenizer_dir, ec) || !fs::is_directory(encoder_dir, ec))
    throw file_error(path, "a pipeline folder with tokenizer/ and text_encoder/ is expected");
  if (!fs::exists(tokenizer_dir / "tokenizer.json", ec))
    throw file_error((tokenizer_dir / "tokenizer.json").string(), "missing (vocab.json + merges.txt alone are not read)");
  tokenizer_ = Tokenizer::load(tokenizer_dir.string());
  // A pipeline whose tokenizer states a shorter limit pads to that (the real Qwen3 tokenizers state
  // 131072 or none, so the families' 512 stands): a small pipeline need not pay for 512 positions.
  if (auto limit = tokenizer_.model_max_length()) prompting_.max_length = std::min(prompting_.max_length, *limit);
  encoder_ = Qwen3Encoder::load(encoder_dir.string(), options, /*lm_head=*/false);
  if (prompting_.layers.empty()) throw Error("Qwen3 text encoder: no hidden-state layers chosen");
  const int64_t L = encoder_->config.num_hidden_layers;
  for (int64_t i : prompting_.layers) {
    const int64_t index = i < 0 ? L + 1 + i : i;
    if (index < 0 || index > L)
      throw file_error(encoder_dir.string(), "has no hidden state " + std::to_string(i) + " (" + std::to_string(L) + " layers)");
    indices_.push_back(index);
  }
  if (tokenizer_.vocab_size() > encoder_->config.vocab_size)
    throw file_error(path, "the tokenizer's ids go up to " + std::to_string(tokenizer_.vocab_size() - 1) +
                               " but the encoder's vocabulary has " + std::to_string(encoder_->config.vocab_size));
  files_ = {(tokenizer_dir / "tokenizer.json").string()};
  if (fs::exists(tokenizer_dir / "tokenizer_config.json", ec)) files_.push_back((tokenizer_dir / "tokenizer_config.json").string());  // pad token, length
  const Checkpoint weights = Checkpoint::open(encoder_dir.string());
  for (const auto& f : weights.files()) files_.push_back(f->path());
}

std::vector<TextFeatures> Qwen3TextEncoder::encode(const std::vector<std::string>& prompts) {
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  EncodedPrompts p = encode_prompts(tokenizer_, prompts, prompting_.chat_template, prompting_.max_length);
  std::vector<at::Tensor> states = encoder_->hidden_states(p.input_ids, p.attention_mask, indices_);
  at::Tensor features = torch::cat(states, -1).to(at::kFloat);  // [B, max_length, n·hidden]
  std::vector<TextFeatures> out;
  for (int64_t b = 0; b < features.size(0); ++b) {
    if (!prompting_.valid_tokens_only) {
      out.push_back(features[b]);
      continue;
    }
    at::Tensor real = p.attention_mask[b].nonzero().squeeze(-1).to(features.device());
    out.push_back(features[b].index_select(0, real));
  }
  return out;
}

std::string Qwen3TextEncoder::identity() const {
  if (identity_.empty()) {
    Sha256 all;
    for (const auto& f : files_) all.update(sha256_file(f));
    std::string settings = chat_template_name(prompting_.chat_template) + ";" + std::to_string(prompting_.max_length) + ";";
    for (int64_t i : indices_) settings += std::to_string(i) + ",";
    settings += prompting_.valid_tokens_only ? "valid" : "all";
    all.update(settings);
    identity_ = "qwen3:" + all.hex();
  }
  return identity_;
}

}  // namespace dt
