#include <CLI/CLI.hpp>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "models/family.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

namespace dt {

int run_tokenize(int argc, char** argv) {
  CLI::App app("Tokenize a text, optionally as a pipeline prompt (chat template, padding, truncation).", argv[0]);
  std::string path, text, template_name = "none";
  int64_t max_length = 0;
  app.add_option("--tokenizer", path, "tokenizer.json, or a folder holding one")->required();
  std::string families_listed;
  for (const Family* f : families()) families_listed += " | " + f->name();
  app.add_option("--template", template_name,
                 "none: print the ids as a JSON array; a model family (" + families_listed.substr(3) + ") or a chat "
                 "template (qwen3 | qwen3-no-thinking): print {\"input_ids\", \"attention_mask\"} padded and truncated "
                 "to --max-length");
  app.add_option("--max-length", max_length, "without a template: keep the first N ids; with one: pad/truncate to N (default 512)")
      ->check(CLI::PositiveNumber);
  app.add_option("TEXT", text, "the text (UTF-8)")->required();
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  bool family = false;
  for (const Family* f : families()) family = family || f->name() == template_name;
  const ChatTemplate t = family ? family_by_name(template_name).chat_template() : parse_chat_template(template_name);
  Tokenizer tokenizer = Tokenizer::load(path);
  nlohmann::ordered_json out;  // keys in the documented order: input_ids, attention_mask
  if (t == ChatTemplate::none) {
    std::vector<int32_t> ids = tokenizer.encode(text);
    if (max_length > 0 && static_cast<int64_t>(ids.size()) > max_length) ids.resize(max_length);
    out = ids;
  } else {
    EncodedPrompts p = encode_prompts(tokenizer, {text}, t, max_length > 0 ? max_length : 512);
    auto to_vector = [](const at::Tensor& row) {
      return std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
    };
    out["input_ids"] = to_vector(p.input_ids[0].contiguous());
    out["attention_mask"] = to_vector(p.attention_mask[0].contiguous());
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace dt
