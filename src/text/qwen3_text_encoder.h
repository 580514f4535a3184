// The text side of the Qwen3-conditioned pipelines as one dt::TextEncoder: chat template, tokenizer
// (padding and truncation), Qwen3 encoder, and the hidden states the family's transformer reads.
// A family states its choices in a Qwen3Prompting, e.g.
//   Z-Image:       {ChatTemplate::qwen3,             512, {-2},        /*valid_tokens_only=*/true}
//   FLUX.2 klein:  {ChatTemplate::qwen3_no_thinking, 512, {9, 18, 27}, /*valid_tokens_only=*/false}
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/model_api.h"
#include "text/prompt.h"
#include "text/qwen3.h"
#include "text/tokenizer.h"

namespace dt {

struct Qwen3Prompting {
  ChatTemplate chat_template = ChatTemplate::none;
  int64_t max_length = 512;  // or the tokenizer's model_max_length where that is smaller
  // Indices into transformers' hidden_states tuple (0..L); negative ones count from its end
  // (−1 = final-normed output, −2 = output of layer L−1). Several are concatenated per token.
  std::vector<int64_t> layers;
  // true: per prompt [real tokens, n·hidden] (padding dropped); false: [max_length, n·hidden].
  bool valid_tokens_only = true;
};

class Qwen3TextEncoder : public TextEncoder {
 public:
  // `path`: a pipeline folder holding tokenizer/ (tokenizer.json) and text_encoder/ (transformers
  // Qwen3 folder). Throws dt::Error naming what is missing.
  Qwen3TextEncoder(const std::string& path, const LoadOptions& options, Qwen3Prompting prompting);

  // One float32 tensor per prompt (see Qwen3Prompting), computed without gradients.
  std::vector<TextFeatures> encode(const std::vector<std::string>& prompts) override;
  // SHA-256 over the tokenizer files, the encoder's safetensors and the prompting settings; computed
  // on first use (it reads every byte of the weights).
  std::string identity() const override;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  Qwen3Encoder& encoder() { return *encoder_; }

 private:
  Tokenizer tokenizer_;
  std::shared_ptr<Qwen3Encoder> encoder_;
  Qwen3Prompting prompting_;
  std::vector<int64_t> indices_;   // layers resolved to 0..L
  std::vector<std::string> files_;  // hashed for identity()
  mutable std::string identity_;
};

}  // namespace dt
