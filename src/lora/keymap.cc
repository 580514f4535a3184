#include "lora/keymap.h"

#include <cctype>

#include "core/error.h"

namespace dt::lora {

namespace {

constexpr std::string_view kNumber = "{n}";

bool same_piece(std::string_view tmpl, std::string_view name, bool flat) {
  if (tmpl.size() != name.size()) return false;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char t = flat && tmpl[i] == '.' ? '_' : tmpl[i];
    if (t != name[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<std::vector<std::string>> match_template(const std::string& tmpl, const std::string& name, bool flat) {
  std::vector<std::string> numbers;
  std::string_view t = tmpl, n = name;
  for (;;) {
    size_t hole = t.find(kNumber);
    std::string_view literal = t.substr(0, hole);
    if (n.size() < literal.size() || !same_piece(literal, n.substr(0, literal.size()), flat)) return std::nullopt;
    n.remove_prefix(literal.size());
    if (hole == std::string_view::npos) break;
    t.remove_prefix(hole + kNumber.size());
    size_t digits = 0;
    while (digits < n.size() && std::isdigit(static_cast<unsigned char>(n[digits]))) ++digits;
    if (digits == 0) return std::nullopt;
    numbers.emplace_back(n.substr(0, digits));
    n.remove_prefix(digits);
  }
  if (!n.empty()) return std::nullopt;
  return numbers;
}

std::string fill_template(const std::string& tmpl, const std::vector<std::string>& numbers) {
  std::string out;
  size_t used = 0, pos = 0;
  for (size_t hole; (hole = tmpl.find(kNumber, pos)) != std::string::npos; pos = hole + kNumber.size()) {
    out += tmpl.substr(pos, hole - pos);
    out += numbers.at(used++);
  }
  return out + tmpl.substr(pos);
}

std::optional<Resolved> resolve(const KeyMap& keys, const std::string& name, bool flat) {
  for (const auto& tmpl : keys.linears)
    if (auto numbers = match_template(tmpl, name, flat)) return Resolved{{fill_template(tmpl, *numbers)}, nullptr, false};
  for (const auto& rule : keys.native) {
    auto numbers = match_template(rule.native, name, flat);
    if (!numbers) continue;
    Resolved r{{}, &rule, true};
    for (const auto& part : rule.diffusers) r.modules.push_back(fill_template(part, *numbers));
    return r;
  }
  return std::nullopt;
}

NativeName native_name(const KeyMap& keys, const std::string& diffusers) {
  for (const auto& rule : keys.native)
    for (size_t i = 0; i < rule.diffusers.size(); ++i)
      if (auto numbers = match_template(rule.diffusers[i], diffusers)) return {fill_template(rule.native, *numbers), &rule, i};
  return {diffusers, nullptr, 0};
}

}  // namespace dt::lora
