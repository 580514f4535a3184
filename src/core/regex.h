// Regular expressions with Python's `re` syntax and semantics where users write them (LoRA layer
// filters, PEFT patterns): a thin PCRE2 wrapper, since std::regex lacks much of that syntax.
#pragma once
#include <memory>
#include <string>

namespace dt {

class Regex {
 public:
  // Throws dt::Error quoting the pattern and PCRE2's message when it does not compile.
  explicit Regex(const std::string& pattern);
  // True when the pattern matches anywhere in `text` (Python re.search).
  bool search(const std::string& text) const;
  // True when the pattern matches a prefix of `text` (Python re.match).
  bool match_prefix(const std::string& text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  bool run(const std::string& text, bool anchored) const;
  std::string pattern_;
  std::shared_ptr<void> code_;  // pcre2_code_8
};

}  // namespace dt
