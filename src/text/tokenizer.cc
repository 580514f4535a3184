#include "text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <filesystem>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/unicode.h"

namespace dt {
namespace {

using json = nlohmann::json;

// The pre-tokenizer regex of GPT-2, used by a plain ByteLevel pre-tokenizer with use_regex.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Regex {
  std::shared_ptr<pcre2_code> code;

  static Regex compile(const std::string& pattern, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      throw file_error(where, "pre-tokenizer regex does not compile at offset " + std::to_string(offset) +
                                  ": " + reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // an interpreter fallback remains when JIT is unavailable
    return Regex{std::shared_ptr<pcre2_code>(code, pcre2_code_free)};
  }

  // Splits valid UTF-8 into the matches and the gaps between them, in order ("Isolated").
  template <class Fn>
  void split(std::string_view text, Fn&& piece) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
        pcre2_match_data_create_from_pattern(code.get(), nullptr), pcre2_match_data_free);
    size_t start = 0, pos = 0;
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (pos <= text.size()) {
      int rc = pcre2_match(code.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw Error("pre-tokenizer regex failed to match (PCRE2 error " + std::to_string(rc) + ")");
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // an empty match splits nothing: step over one code point
        if (b >= text.size()) break;
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
        continue;
      }
      if (b > start) piece(text.substr(start, b - start));
      piece(text.substr(b, e - b));
      start = pos = e;
    }
    if (start < text.size()) piece(text.substr(start));
  }
};

json parse_json(const std::string& text, const std::string& name) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw file_error(name, "not a JSON object");
  return j;
}

// j[key] without a copy (json::value() copies), or null when absent.
const json& member(const json& j, const char* key) {
  static const json null;
  auto it = j.is_object() ? j.find(key) : j.end();
  return it == j.end() ? null : *it;
}

bool is_null_or(const json& j, const char* key, const json& value) {
  return !j.contains(key) || j[key].is_null() || j[key] == value;
}

// A token given as a string or as an AddedToken object ({"content": ...}).
std::optional<std::string> token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

struct Tokenizer::Impl {
  std::string name;
  std::unordered_map<std::string, int32_t> ids;  // byte-level token string → id (vocab + added)
  std::vector<std::string> tokens;               // id → token string ("" for unused ids)
  std::array<int32_t, 256> byte_ids{};           // id of each single-byte token
  struct Merge {
    int32_t rank, merged;
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) → rank, merged id
  bool ignore_merges = false;
  bool nfc = false;
  std::optional<Regex> split;
  std::vector<AddedToken> added;
  std::vector<bool> is_added, is_special;  // by id
  std::vector<std::optional<std::string>> token_bytes;  // by id: raw bytes of a vocab token, if in the alphabet
  std::array<bool, 256> added_first_byte{};
  int32_t pad = -1;
  std::optional<int64_t> model_max_length;  // tokenizer_config.json's, when it states a limit

  // Word (raw bytes) → ids. Results are cached: prompts repeat words a lot.
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t pair_key(int32_t a, int32_t b) { return static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32 | static_cast<uint32_t>(b); }
  void load(const json& j);
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  using WordSink = std::function<void(std::string_view word)>;
  // Splits text at the added tokens of one kind (raw-text or normalized ones): each added token's id
  // goes to `out`; the words of the text in between (normalized, pre-tokenized) go to `word`.
  void split_added(std::string_view text, bool normalized, std::vector<int32_t>& out, const WordSink& word) const;
};

void Tokenizer::Impl::load(const json& j) {
  auto fail = [&](const std::string& msg) { return file_error(name, msg); };
  const json& model = member(j, "model");
  if (!model.is_object() || model.value("type", "") != "BPE") throw fail("model.type is not \"BPE\"");
  if (!is_null_or(model, "dropout", json()) ) throw fail("BPE dropout is not supported");
  if (model.value("byte_fallback", false)) throw fail("BPE byte_fallback is not supported");
  if (!is_null_or(model, "continuing_subword_prefix", "") || !is_null_or(model, "end_of_word_suffix", ""))
    throw fail("BPE subword prefixes/suffixes are not supported (not a byte-level BPE)");
  ignore_merges = model.value("ignore_merges", false);

  const json& vocab = member(model, "vocab");
  if (!vocab.is_object() || vocab.empty()) throw fail("model.vocab is missing or empty");
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 30))
      throw fail("vocab entry '" + token + "' has no valid id");
    ids[token] = id.get<int32_t>();
    max_id = std::max(max_id, id.get<int32_t>());
  }
  const json& added_json = member(j, "added_tokens");
  if (!added_json.is_array() && !added_json.is_null()) throw fail("added_tokens is not an array");
  for (const auto& a : added_json) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !token_content(a))
      throw fail("an added token has no id or content");
    AddedToken t{*token_content(a), a["id"].get<int32_t>(), a.value("special", false), a.value("normalized", false)};
    if (t.id < 0 || t.id > (1 << 30) || t.content.empty()) throw fail("added token '" + t.content + "' has an invalid id or is empty");
    if (valid_utf8_prefix(t.content) != t.content.size()) throw fail("an added token is not valid UTF-8");
    if (a.value("lstrip", false) || a.value("rstrip", false) || a.value("single_word", false))
      throw fail("added token '" + t.content + "' uses lstrip/rstrip/single_word, which is not supported");
    ids[t.content] = t.id;
    max_id = std::max(max_id, t.id);
    added.push_back(t);
  }
  // Longest first: at one position the longest added token wins (HF's leftmost-longest matching).
  std::stable_sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  tokens.assign(max_id + 1, "");
  is_added.assign(max_id + 1, false);
  for (const auto& [token, id] : ids) tokens[id] = token;
  is_special.assign(max_id + 1, false);
  for (const auto& a : added) {
    is_added[a.id] = true;
    is_special[a.id] = a.special;
    added_first_byte[static_cast<unsigned char>(a.content[0])] = true;
  }

  const auto& alphabet = byte_to_code_point();
  std::unordered_map<char32_t, char> code_point_to_byte;
  for (int b = 0; b < 256; ++b) code_point_to_byte[alphabet[b]] = static_cast<char>(b);
  token_bytes.resize(max_id + 1);
  for (int32_t id = 0; id <= max_id; ++id) {
    const std::string& t = tokens[id];
    std::string bytes;
    bool ok = !is_added[id];
    for (size_t i = 0; ok && i < t.size();) {
      unsigned char b0 = t[i];
      size_t len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;  // t is valid UTF-8 (JSON)
      char32_t c = len == 1 ? b0 : len == 2 ? b0 & 0x1F : len == 3 ? b0 & 0x0F : b0 & 0x07;
      for (size_t k = 1; k < len; ++k) c = c << 6 | (static_cast<unsigned char>(t[i + k]) & 0x3F);
      auto it = code_point_to_byte.find(c);
      ok = it != code_point_to_byte.end();
      if (ok) bytes += it->second;
      i += len;
    }
    if (ok) token_bytes[id] = std::move(bytes);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = ids.find(utf8_encode(alphabet[b]));
    if (it == ids.end()) throw fail("vocab lacks the byte-level token of byte " + std::to_string(b));
    byte_ids[b] = it->second;
  }

  const json& merge_list = member(model, "merges");
  if (!merge_list.is_array() && !merge_list.is_null()) throw fail("model.merges is not an array");
  merges.reserve(merge_list.size());
  for (size_t rank = 0; rank < merge_list.size(); ++rank) {
    const json& m = merge_list[rank];
    std::string left, right;
    if (m.is_string()) {  // "left right" (older files)
      const std::string s = m.get<std::string>();
      size_t space = s.find(' ', 1);
      if (space == std::string::npos) throw fail("merge " + std::to_string(rank) + " is not 'left right'");
      left = s.substr(0, space), right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      throw fail("merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
    }
    auto l = ids.find(left), r = ids.find(right), lr = ids.find(left + right);
    if (l == ids.end() || r == ids.end() || lr == ids.end())
      throw fail("merge " + std::to_string(rank) + " ('" + left + "', '" + right + "') uses a token missing from the vocab");
    merges.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), lr->second});  // first (lowest) rank wins
  }

  const json& normalizer = member(j, "normalizer");
  if (normalizer.is_object() && normalizer.value("type", "") == "NFC") nfc = true;
  else if (!normalizer.is_null()) throw fail("normalizer " + normalizer.dump() + " is not supported (only NFC or none)");

  const json& pre = member(j, "pre_tokenizer");
  std::vector<json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array())
    steps.assign(pre["pretokenizers"].begin(), pre["pretokenizers"].end());
  else if (pre.is_object()) steps.push_back(pre);
  bool byte_level = false;
  for (const json& step : steps) {
    const std::string type = step.value("type", "");
    if (type == "Split" && !byte_level && !split) {
      const json& pattern = member(step, "pattern");
      if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string())
        throw fail("Split pre-tokenizer without a Regex pattern is not supported");
      if (step.value("behavior", "") != "Isolated" || step.value("invert", false))
        throw fail("Split pre-tokenizer behaviour other than Isolated is not supported");
      split = Regex::compile(pattern["Regex"].get<std::string>(), name);
    } else if (type == "ByteLevel" && !byte_level) {
      if (step.value("add_prefix_space", false)) throw fail("ByteLevel add_prefix_space is not supported");
      if (step.value("use_regex", true)) {
        if (split) throw fail("ByteLevel use_regex after a Split is not supported");
        split = Regex::compile(kGpt2Pattern, name);
      }
      byte_level = true;
    } else {
      throw fail("pre-tokenizer step " + step.dump().substr(0, 120) + " is not supported");
    }
  }
  if (!byte_level) throw fail("pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");

  const json& decoder = member(j, "decoder");
  if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel") throw fail("decoder other than ByteLevel is not supported");
  const json& post = member(j, "post_processor");
  if (!post.is_null() && post.value("type", "") != "ByteLevel")
    throw fail("post_processor " + post.value("type", std::string("?")) + " is not supported (it would add tokens)");

  auto endoftext = ids.find("<|endoftext|>");
  if (endoftext != ids.end()) pad = endoftext->second;
}

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(std::string(word));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> result;
  auto whole = ignore_merges ? ids.find(to_byte_level(word)) : ids.end();
  if (whole != ids.end()) {
    result.push_back(whole->second);
  } else {
    // Symbols in a doubly linked list; candidate merges in a min-heap by (rank, position). A
    // candidate is stale when either side has changed since it was pushed.
    struct Symbol {
      int32_t id;
      int prev, next;
    };
    struct Candidate {
      int32_t rank;
      int pos;
      int32_t left, right, merged;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<Symbol> sym(word.size());
    for (size_t i = 0; i < word.size(); ++i)
      sym[i] = {byte_ids[static_cast<unsigned char>(word[i])], static_cast<int>(i) - 1, i + 1 < word.size() ? static_cast<int>(i) + 1 : -1};
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto push = [&](int pos) {
      if (pos < 0 || sym[pos].next < 0) return;
      int32_t a = sym[pos].id, b = sym[sym[pos].next].id;
      auto m = merges.find(pair_key(a, b));
      if (m != merges.end()) heap.push({m->second.rank, pos, a, b, m->second.merged});
    };
    for (size_t i = 0; i + 1 < word.size(); ++i) push(static_cast<int>(i));
    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      Symbol& s = sym[c.pos];
      if (s.id != c.left || s.next < 0 || sym[s.next].id != c.right) continue;
      int gone = s.next;
      s.id = c.merged;
      s.next = sym[gone].next;
      if (s.next >= 0) sym[s.next].prev = c.pos;
      sym[gone].id = -1;
      push(s.prev);
      push(c.pos);
    }
    for (int i = word.empty() ? -1 : 0; i >= 0; i = sym[i].next) result.push_back(sym[i].id);
  }
  out.insert(out.end(), result.begin(), result.end());
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() > (1u << 16)) cache.clear();  // bounded: a long run of distinct words cannot grow it forever
  cache.emplace(std::string(word), std::move(result));
}

void Tokenizer::Impl::split_added(std::string_view text, bool normalized, std::vector<int32_t>& out,
                                  const WordSink& word) const {
  auto rest = [&](std::string_view piece) {
    if (piece.empty()) return;
    if (!normalized) split_added(nfc ? dt::nfc(piece) : std::string(piece), true, out, word);
    else if (split) split->split(piece, word);
    else word(piece);
  };
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* hit = nullptr;
    if (added_first_byte[static_cast<unsigned char>(text[pos])])
      for (const auto& a : added)
        if (a.normalized == normalized && text.compare(pos, a.content.size(), a.content) == 0) {
          hit = &a;  // longest first
          break;
        }
    if (!hit) {
      ++pos;
      continue;
    }
    rest(text.substr(start, pos - start));
    out.push_back(hit->id);
    pos += hit->content.size();
    start = pos;
  }
  rest(text.substr(start));
}

Tokenizer Tokenizer::parse(const std::string& json_text, const std::string& name) {
  auto impl = std::make_shared<Impl>();
  impl->name = name;
  impl->load(parse_json(json_text, name));
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(file, ec)) file /= "tokenizer.json";
  if (!fs::is_regular_file(file, ec)) throw file_error(file.string(), "no such tokenizer file");
  Tokenizer t = parse(read_file(file.string()), file.string());
  fs::path config = file.parent_path() / "tokenizer_config.json";
  auto impl = std::const_pointer_cast<Impl>(t.impl_);
  if (fs::is_regular_file(config, ec)) {
    json c = parse_json(read_file(config.string()), config.string());
    if (c.contains("pad_token") && !c["pad_token"].is_null()) {
      auto pad = token_content(c["pad_token"]);
      if (!pad || !t.find(*pad)) throw file_error(config.string(), "pad_token is not a token of " + file.string());
      impl->pad = *t.find(*pad);
    }
    // transformers writes 1e30 for "no limit"; anything past int64 is that.
    if (c.contains("model_max_length") && !c["model_max_length"].is_null()) {
      if (!c["model_max_length"].is_number() || c["model_max_length"].get<double>() < 1)
        throw file_error(config.string(), "model_max_length is not a positive number");
      const double limit = c["model_max_length"].get<double>();
      if (limit < 9.0e18) impl->model_max_length = static_cast<int64_t>(limit);
    }
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  size_t valid = valid_utf8_prefix(text);
  if (valid != text.size()) throw Error("text to tokenize is not valid UTF-8 (byte " + std::to_string(valid) + ")");
  std::vector<int32_t> out;
  impl_->split_added(text, false, out, [&](std::string_view word) { impl_->bpe(word, out); });
  return out;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  if (valid_utf8_prefix(text) != text.size()) throw Error("text to tokenize is not valid UTF-8");
  std::vector<std::string> words;
  std::vector<int32_t> added;
  impl_->split_added(text, false, added, [&](std::string_view word) { words.emplace_back(word); });
  return words;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string text, bytes;
  for (int32_t id : ids) {
    const std::string& t = token(id);
    if (impl_->is_added[id]) {
      text += utf8_replace_invalid(bytes);
      bytes.clear();
      if (!(skip_special_tokens && impl_->is_special[id])) text += t;
      continue;
    }
    if (!impl_->token_bytes[id]) throw Error("token " + std::to_string(id) + " has a character outside the byte-level alphabet");
    bytes += *impl_->token_bytes[id];
  }
  return text + utf8_replace_invalid(bytes);
}

std::optional<int32_t> Tokenizer::find(const std::string& token) const {
  auto it = impl_->ids.find(token);
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::id(const std::string& token) const {
  auto found = find(token);
  if (!found) throw file_error(impl_->name, "no token '" + token + "'");
  return *found;
}

const std::string& Tokenizer::token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || (impl_->tokens[id].empty()))
    throw file_error(impl_->name, "token id " + std::to_string(id) + " is not in the vocabulary");
  return impl_->tokens[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->tokens.size()); }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

std::optional<int64_t> Tokenizer::model_max_length() const { return impl_->model_max_length; }

int32_t Tokenizer::pad_id() const {
  if (impl_->pad < 0) throw file_error(impl_->name, "no pad token (no <|endoftext|> and no tokenizer_config.json pad_token)");
  return impl_->pad;
}

}  // namespace dt
