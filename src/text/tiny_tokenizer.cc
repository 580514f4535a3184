#include "text/tiny_tokenizer.h"

#include <filesystem>
#include <map>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace dt {

const char* const kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

using json = nlohmann::ordered_json;

// Captions of the kind image datasets carry: the merges learned on them give common words short ids.
constexpr const char* kCorpus = R"(a photo of a cat sitting on a windowsill, golden hour lighting
a cute dog running on the beach at sunset, highly detailed
portrait of a woman with red hair, studio lighting, 85mm lens
a red car parked in front of an old building in the city at night
landscape with mountains and a lake, clouds in the sky, morning light
an oil painting of flowers in a vase on a wooden table
a man wearing a blue jacket standing in the rain, street photography
close-up photo of a small bird on a branch, soft background
a bowl of fruit with apples, oranges and grapes, still life
a castle on a hill under a starry sky, fantasy illustration
the interior of a cozy living room with a fireplace and a sofa
a child playing with a ball in the park on a sunny day
black and white photo of a train station, people walking
a cup of coffee on a table next to a book, warm light
a futuristic city with tall buildings and flying cars, digital art
a sign that says hello world, text, typography
)";

// Learns `count` merges on the corpus words: repeatedly the most frequent adjacent pair (ties: the
// smallest pair of ids), as BPE training does.
std::vector<std::pair<int32_t, int32_t>> learn_merges(const std::vector<std::string>& words, int count,
                                                     std::vector<std::string>& tokens) {
  std::map<std::vector<int32_t>, int64_t> counts;
  for (const auto& w : words) {
    std::vector<int32_t> symbols;
    for (unsigned char b : w) symbols.push_back(b);
    ++counts[symbols];
  }
  std::vector<std::pair<std::vector<int32_t>, int64_t>> corpus(counts.begin(), counts.end());
  std::vector<std::pair<int32_t, int32_t>> merges;
  while (static_cast<int>(merges.size()) < count) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const auto& [symbols, n] : corpus)
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += n;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;
    const auto [a, b] = best->first;
    const auto merged = static_cast<int32_t>(tokens.size());
    tokens.push_back(tokens[a] + tokens[b]);
    merges.emplace_back(a, b);
    for (auto& [symbols, n] : corpus) {
      std::vector<int32_t> next;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == a && symbols[i + 1] == b) next.push_back(merged), ++i;
        else next.push_back(symbols[i]);
      }
      symbols = std::move(next);
    }
  }
  return merges;
}

json byte_level_step() {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
}

}  // namespace

void write_tiny_tokenizer(const std::string& dir, int32_t vocab_size) {
  const std::vector<std::pair<std::string, bool>> specials = {
      {"<|endoftext|>", true}, {"<|im_start|>", true}, {"<|im_end|>", true}, {"<think>", false}, {"</think>", false}};
  const auto n_specials = static_cast<int32_t>(specials.size());
  if (vocab_size < 256 + n_specials) throw Error("a byte-level tokenizer needs a vocabulary of at least 261 tokens");

  std::vector<std::string> tokens;  // byte-level strings, by id
  for (int b = 0; b < 256; ++b) tokens.push_back(utf8_encode(byte_to_code_point()[b]));

  json pre_tokenizer = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", kQwenSplitPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                          byte_level_step()}}};
  // Words of the corpus, split exactly as the written tokenizer will split text.
  json bytes_only = {{"model", {{"type", "BPE"}, {"vocab", json::object()}, {"merges", json::array()}}},
                     {"normalizer", {{"type", "NFC"}}},
                     {"pre_tokenizer", pre_tokenizer},
                     {"decoder", byte_level_step()}};
  for (int b = 0; b < 256; ++b) bytes_only["model"]["vocab"][tokens[b]] = b;
  std::vector<std::string> words = Tokenizer::parse(bytes_only.dump(), "tiny tokenizer").pre_tokenize(kCorpus);
  auto merges = learn_merges(words, vocab_size - 256 - n_specials, tokens);

  json vocab = json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  json merge_list = json::array();
  for (const auto& [a, b] : merges) merge_list.push_back({tokens[a], tokens[b]});
  json added = json::array(), added_decoder = json::object();
  for (int32_t i = 0; i < n_specials; ++i) {
    const auto id = static_cast<int32_t>(tokens.size()) + i;
    json token = {{"content", specials[i].first}, {"single_word", false}, {"lstrip", false},
                  {"rstrip", false},              {"normalized", false},  {"special", specials[i].second}};
    added_decoder[std::to_string(id)] = token;
    token["id"] = id;
    added.push_back(token);
  }
  json tokenizer = {{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", added},
                    {"normalizer", {{"type", "NFC"}}},
                    {"pre_tokenizer", pre_tokenizer},
                    {"post_processor", byte_level_step()},
                    {"decoder", byte_level_step()},
                    {"model",
                     {{"type", "BPE"},
                      {"dropout", nullptr},
                      {"unk_token", nullptr},
                      {"continuing_subword_prefix", ""},
                      {"end_of_word_suffix", ""},
                      {"fuse_unk", false},
                      {"byte_fallback", false},
                      {"ignore_merges", false},
                      {"vocab", vocab},
                      {"merges", merge_list}}}};
  // A template of our own that renders one user message exactly as Qwen3's does, with and without
  // enable_thinking.
  const char* chat_template =
      "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
      "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
      "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
      "{%- endif %}";
  json config = {{"add_bos_token", false},
                 {"add_prefix_space", false},
                 {"added_tokens_decoder", added_decoder},
                 {"additional_special_tokens", {"<|im_start|>", "<|im_end|>"}},
                 {"bos_token", nullptr},
                 {"chat_template", chat_template},
                 {"clean_up_tokenization_spaces", false},
                 {"eos_token", "<|im_end|>"},
                 {"errors", "replace"},
                 {"model_max_length", 131072},
                 {"pad_token", "<|endoftext|>"},
                 {"split_special_tokens", false},
                 {"tokenizer_class", "Qwen2Tokenizer"},
                 {"unk_token", nullptr}};
  std::filesystem::create_directories(dir);
  write_file_atomic((std::filesystem::path(dir) / "tokenizer.json").string(), tokenizer.dump(2) + "\n");
  write_file_atomic((std::filesystem::path(dir) / "tokenizer_config.json").string(), config.dump(2) + "\n");
}

}  // namespace dt
