// Byte-level BPE read from a Hugging Face tokenizer.json (the GPT-2 / Qwen2 / Qwen3 family):
// added tokens matched in the raw text first, then NFC, the pre-tokenizer's split regex (PCRE2,
// Unicode properties), the byte-level alphabet, and merges applied lowest rank first.
// Anything in the file this reader does not implement is refused with an error naming it.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dt {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool normalized = false;  // matched after normalization instead of in the raw text
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json, or a folder holding one (and optionally tokenizer_config.json, whose
  // pad_token and model_max_length are read). Throws dt::Error naming the file and the problem.
  static Tokenizer load(const std::string& path);
  // From the text of a tokenizer.json; `name` is used in error messages.
  static Tokenizer parse(const std::string& json_text, const std::string& name);

  // Text (UTF-8, else dt::Error) → ids. Adds no BOS/EOS.
  std::vector<int32_t> encode(std::string_view text) const;
  // The words BPE runs on: the text between added tokens, normalized and split by the pre-tokenizer.
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  // Ids → text; bytes that do not form UTF-8 become U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> find(const std::string& token) const;  // vocabulary or added token
  int32_t id(const std::string& token) const;                   // throws when absent
  const std::string& token(int32_t id) const;                   // throws when out of range
  int32_t vocab_size() const;                                   // highest id + 1
  const std::vector<AddedToken>& added_tokens() const;
  int32_t pad_id() const;  // tokenizer_config.json pad_token, else <|endoftext|>
  // tokenizer_config.json's model_max_length: the most tokens the model takes (none when unstated
  // or transformers' "no limit").
  std::optional<int64_t> model_max_length() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace dt
