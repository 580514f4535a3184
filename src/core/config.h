// Config structs list their fields once, and that one table drives reading (TOML files and
// `--set key=value` overrides), defaults, documentation and printing:
//
//   struct LoraConfig {
//     int64_t rank = 16;
//     double alpha = 1.0;
//     template <class V> void fields(V& v) {
//       v("rank", rank, "LoRA rank");
//       v("alpha", alpha, "LoRA alpha; the adapter output is scaled by alpha / rank");
//     }
//   };
//
// Field types: bool, int, int64_t, double, std::string, std::vector of int64_t / double /
// std::string, a nested config struct (a TOML table) and std::vector of config structs (an array
// of tables). Unknown keys and wrong types are errors naming the file and the key.
#pragma once
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <toml++/toml.h>

#include "core/error.h"

namespace dt {

// Whether a setting takes part in config_values (cache keys). `omit` is for settings that cannot
// change what a run computes, only where it runs (block offloading moves weights between host and
// device, bit for bit): a cached stage stays valid whatever they say. `when_set` takes part only
// when it differs from the default-constructed value (empty, zero), so that adding a setting which
// changes results keeps every key that was made before it existed.
enum class CacheKey { include, omit, when_set };

namespace config_detail {

struct Probe {
  template <class T>
  void operator()(const char*, T&, const char*, CacheKey = CacheKey::include) {}
};

template <class T>
concept Section = requires(T& t, Probe& p) { t.fields(p); };

template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

template <class T>
struct is_section_vector : std::false_type {};
template <Section T>
struct is_section_vector<std::vector<T>> : std::true_type {
  using element = T;
};

// Reads one TOML table into a struct; `where` is the dotted path for messages.
class Reader {
 public:
  Reader(const toml::table& table, std::string file, std::string where)
      : table_(table), file_(std::move(file)), where_(std::move(where)) {}

  template <class T>
  void operator()(const char* name, T& value, const char* /*doc*/, CacheKey = CacheKey::include) {
    seen_.insert(name);
    const toml::node* node = table_.get(name);
    if (!node) return;
    read(*node, value, key(name));
  }

  void check_unknown() const {
    for (const auto& [k, _] : table_)
      if (!seen_.count(std::string(k.str())))
        throw file_error(file_, "unknown setting '" + key(std::string(k.str())) + "'");
  }

 private:
  std::string key(const std::string& name) const { return where_.empty() ? name : where_ + "." + name; }
  [[noreturn]] void type_error(const std::string& k, const std::string& expected) const {
    throw file_error(file_, "setting '" + k + "' must be " + expected);
  }

  void read(const toml::node& n, bool& v, const std::string& k) {
    if (!n.is_boolean()) type_error(k, "true or false");
    v = *n.value<bool>();
  }
  void read(const toml::node& n, int& v, const std::string& k) {
    int64_t w = 0;
    read(n, w, k);
    if (w < INT32_MIN || w > INT32_MAX) type_error(k, "a 32-bit integer");
    v = static_cast<int>(w);
  }
  void read(const toml::node& n, int64_t& v, const std::string& k) {
    if (!n.is_integer()) type_error(k, "an integer");
    v = *n.value<int64_t>();
  }
  void read(const toml::node& n, double& v, const std::string& k) {
    if (!n.is_number()) type_error(k, "a number");
    v = *n.value<double>();
  }
  void read(const toml::node& n, std::string& v, const std::string& k) {
    if (!n.is_string()) type_error(k, "a string");
    v = *n.value<std::string>();
  }
  template <class T>
  void read(const toml::node& n, std::vector<T>& v, const std::string& k) {
    if constexpr (Section<T>) {
      const toml::array* a = n.as_array();
      if (!a || !a->is_array_of_tables()) type_error(k, "an array of tables ([[" + k + "]])");
      v.clear();
      for (size_t i = 0; i < a->size(); ++i) {
        T item{};
        read_section(*a->get(i)->as_table(), item, k + "[" + std::to_string(i) + "]");
        v.push_back(std::move(item));
      }
    } else {
      v.clear();
      if (const toml::array* a = n.as_array()) {
        for (size_t i = 0; i < a->size(); ++i) {
          T item{};
          read(*a->get(i), item, k + "[" + std::to_string(i) + "]");
          v.push_back(std::move(item));
        }
      } else {  // a single value stands for a one-element list
        T item{};
        read(n, item, k);
        v.push_back(std::move(item));
      }
    }
  }
  template <class T>
    requires Section<T>
  void read(const toml::node& n, T& v, const std::string& k) {
    if (!n.is_table()) type_error(k, "a table ([" + k + "])");
    read_section(*n.as_table(), v, k);
  }
  template <class T>
  void read_section(const toml::table& t, T& v, const std::string& k) {
    Reader sub(t, file_, k);
    v.fields(sub);
    sub.check_unknown();
  }

  const toml::table& table_;
  std::string file_, where_;
  std::set<std::string> seen_;
};

// Prints a struct as a TOML document holding its current values; `documented`: each setting's
// help as a comment, and an empty array of tables as a commented example.
class Writer {
 public:
  Writer(std::string where, bool documented) : where_(std::move(where)), documented_(documented) {}

  template <class T>
  void operator()(const char* name, T& value, const char* doc, CacheKey key = CacheKey::include) {
    if (!documented_ && key == CacheKey::omit) return;
    if constexpr (std::is_same_v<T, std::string> || std::is_arithmetic_v<T>)
      if (!documented_ && key == CacheKey::when_set && value == T{}) return;
    if constexpr (Section<T>) {
      Writer sub(where_.empty() ? name : where_ + "." + name, documented_);
      value.fields(sub);
      sections_ << "\n" << comment(doc) << "[" << sub.where_ << "]\n" << sub.str();
    } else if constexpr (is_section_vector<T>::value) {
      const std::string path = where_.empty() ? name : where_ + "." + name;
      sections_ << "\n" << comment(doc);
      if (value.empty() && documented_) {
        typename is_section_vector<T>::element example{};
        Writer sub(path, documented_);
        example.fields(sub);
        std::istringstream lines("[[" + path + "]]\n" + sub.str());
        for (std::string line; std::getline(lines, line);) sections_ << "# " << line << "\n";
      }
      for (auto& item : value) {
        Writer sub(path, documented_);
        item.fields(sub);
        sections_ << "[[" << path << "]]\n" << sub.str();
      }
    } else {
      plain_ << comment(doc) << name << " = " << format(value) << "\n";
    }
  }

  std::string str() const { return plain_.str() + sections_.str(); }

 private:
  template <class T>
  static std::string format(const T& v) {
    if constexpr (is_vector<T>::value) {
      toml::array a;
      for (const auto& x : v) a.push_back(x);
      std::ostringstream s;
      s << a;
      return s.str();
    } else if constexpr (std::is_same_v<T, bool>) {
      return v ? "true" : "false";
    } else {
      std::ostringstream s;
      s << toml::value<std::conditional_t<std::is_same_v<T, int>, int64_t, T>>(v);
      return s.str();
    }
  }

  std::string comment(const char* doc) const { return documented_ ? "# " + std::string(doc) + "\n" : ""; }

  std::string where_;
  bool documented_;
  std::ostringstream plain_, sections_;
};

}  // namespace config_detail

// Parses TOML text (`file` names it in messages) with `key=value` overrides applied on top
// (value in TOML syntax; a bare word is taken as a string), into `config`.
template <class T>
void read_config_text(const std::string& text, const std::string& file, const std::vector<std::string>& overrides,
                      T& config) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw file_error(file, "line " + std::to_string(where.line) + ": " + std::string(e.description()));
  }
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--set '" + o + "': expected key=value");
    const std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    toml::table parsed;
    try {
      parsed = toml::parse("v = " + value);
    } catch (const toml::parse_error&) {
      parsed.insert("v", value);
    }
    toml::table* t = &root;
    std::string::size_type start = 0;
    for (auto dot = key.find('.'); dot != std::string::npos; start = dot + 1, dot = key.find('.', start)) {
      const std::string part = key.substr(start, dot - start);
      if (!t->contains(part)) t->insert(part, toml::table{});
      t = t->get(part)->as_table();
      if (!t) throw Error("--set '" + o + "': '" + part + "' is not a table");
    }
    t->insert_or_assign(key.substr(start), *parsed.get("v"));
  }
  config_detail::Reader reader(root, file, "");
  config.fields(reader);
  reader.check_unknown();
}

// A documented TOML file holding every setting of `config` with its current value.
template <class T>
std::string config_to_toml(T& config) {
  config_detail::Writer writer("", true);
  config.fields(writer);
  return writer.str();
}

// Every setting's value and nothing else, for cache keys: rewording a setting's help, adding a
// field to an array of tables the config leaves empty, or a CacheKey::omit setting must not make a
// cached stage run again.
template <class T>
std::string config_values(T& config) {
  config_detail::Writer writer("", false);
  config.fields(writer);
  return writer.str();
}

}  // namespace dt
