// A small but real Qwen3-style tokenizer for tests and the tiny world: byte-level BPE with merges
// learned on a built-in caption corpus, Qwen3's pre-tokenizer regex and NFC, and the special tokens
// the pipelines use, all with ids below `vocab_size`.
#pragma once
#include <cstdint>
#include <string>

namespace dt {

// Writes dir/tokenizer.json and dir/tokenizer_config.json (chat template, pad token). Ids: 0..255
// the bytes, then up to vocab_size − 261 merges (fewer when the corpus runs out of pairs), then
// <|endoftext|>, <|im_start|>, <|im_end|>, <think>, </think>; all below vocab_size (≥ 261).
// Same vocab_size ⇒ same bytes.
void write_tiny_tokenizer(const std::string& dir, int32_t vocab_size);

// The pre-tokenizer regex of Qwen2/Qwen3 tokenizer.json files.
extern const char* const kQwenSplitPattern;

}  // namespace dt
