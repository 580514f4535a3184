#include "text/prompt.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace dt {

ChatTemplate parse_chat_template(const std::string& name) {
  if (name == "none") return ChatTemplate::none;
  if (name == "qwen3") return ChatTemplate::qwen3;
  if (name == "qwen3-no-thinking") return ChatTemplate::qwen3_no_thinking;
  throw Error("unknown chat template '" + name + "' (known: none, qwen3, qwen3-no-thinking)");
}

std::string chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::none: return "none";
    case ChatTemplate::qwen3: return "qwen3";
    case ChatTemplate::qwen3_no_thinking: return "qwen3-no-thinking";
  }
  return "?";
}

std::string apply_chat_template(ChatTemplate t, const std::string& prompt) {
  if (t == ChatTemplate::none) return prompt;
  std::string text = "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n";
  if (t == ChatTemplate::qwen3_no_thinking) text += "<think>\n\n</think>\n\n";
  return text;
}

EncodedPrompts encode_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              ChatTemplate t, int64_t max_length) {
  if (max_length <= 0) throw Error("max_length must be positive, not " + std::to_string(max_length));
  const auto batch = static_cast<int64_t>(prompts.size());
  EncodedPrompts out{at::full({batch, max_length}, tokenizer.pad_id(), at::kLong), at::zeros({batch, max_length}, at::kLong)};
  auto ids = out.input_ids.accessor<int64_t, 2>();
  auto mask = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> tokens = tokenizer.encode(apply_chat_template(t, prompts[b]));
    const auto n = std::min<int64_t>(max_length, static_cast<int64_t>(tokens.size()));
    for (int64_t i = 0; i < n; ++i) ids[b][i] = tokens[i], mask[b][i] = 1;
  }
  return out;
}

}  // namespace dt
