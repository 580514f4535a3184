// Prompt formatting as the pipelines do it: the Qwen3 chat template around one user message, then
// tokenization with right padding and truncation to a fixed length.
#pragma once
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "text/tokenizer.h"

namespace dt {

// Qwen3's chat template around one user message, by its enable_thinking switch (a family picks one).
enum class ChatTemplate {
  none,               // the prompt as is
  qwen3,              // enable_thinking = true → "<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"
  qwen3_no_thinking,  // enable_thinking = false → the same + "<think>\n\n</think>\n\n"
};

ChatTemplate parse_chat_template(const std::string& name);  // "none", "qwen3", "qwen3-no-thinking"
std::string chat_template_name(ChatTemplate t);

// What Qwen3's chat template renders for [{role: user, content: prompt}] with
// add_generation_prompt = true and the template's enable_thinking.
std::string apply_chat_template(ChatTemplate t, const std::string& prompt);

struct EncodedPrompts {
  at::Tensor input_ids;       // [B, max_length] int64, right-padded with the pad token
  at::Tensor attention_mask;  // [B, max_length] int64, 1 = real token
};

// Template, tokenize, cut each prompt to its first max_length tokens (template tokens count) and
// pad to max_length (padding="max_length", truncation=True).
EncodedPrompts encode_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              ChatTemplate t, int64_t max_length);

}  // namespace dt
