#include "core/config.h"

#include <gtest/gtest.h>

namespace dt {
namespace {

struct Inner {
  std::string path;
  int64_t repeats = 1;
  template <class V>
  void fields(V& v) {
    v("path", path, "folder of images");
    v("repeats", repeats, "times per epoch");
  }
};

struct Outer {
  double lr = 1e-4;
  bool flag = false;
  int steps = 10;
  std::vector<int64_t> sizes{512};
  Inner inner;
  std::vector<Inner> items;
  int64_t placement = 0;
  std::string later;
  template <class V>
  void fields(V& v) {
    v("lr", lr, "learning rate");
    v("flag", flag, "a switch");
    v("steps", steps, "steps");
    v("sizes", sizes, "sizes");
    v("inner", inner, "inner table");
    v("items", items, "items");
    v("placement", placement, "where it runs", CacheKey::omit);
    v("later", later, "added after keys were made", CacheKey::when_set);
  }
};

TEST(Config, DefaultsOverridesAndArrays) {
  Outer c;
  read_config_text("lr = 0.5\n[inner]\npath = 'a'\n[[items]]\npath = 'x'\n[[items]]\npath = 'y'\nrepeats = 3\n",
                   "c.toml", {"steps=7", "inner.repeats=4", "sizes=[256, 768]", "inner.path=bare"}, c);
  EXPECT_EQ(c.lr, 0.5);
  EXPECT_FALSE(c.flag);
  EXPECT_EQ(c.steps, 7);
  EXPECT_EQ(c.sizes, (std::vector<int64_t>{256, 768}));
  EXPECT_EQ(c.inner.path, "bare");
  EXPECT_EQ(c.inner.repeats, 4);
  ASSERT_EQ(c.items.size(), 2u);
  EXPECT_EQ(c.items[1].path, "y");
  EXPECT_EQ(c.items[1].repeats, 3);
}

TEST(Config, PrintedDefaultsReadBackIdentically) {
  Outer c;
  c.items.push_back(Inner{"p", 2});
  Outer back;
  read_config_text(config_to_toml(c), "printed.toml", {}, back);
  EXPECT_EQ(config_to_toml(back), config_to_toml(c));
  EXPECT_EQ(back.items.at(0).repeats, 2);
}

// Cache keys hold the values alone: every value, exactly as printed, and no help text or example.
TEST(Config, ValuesAreThePrintedSettingsWithoutTheirHelp) {
  Outer c;
  EXPECT_EQ(config_values(c), "lr = 0.0001\nflag = false\nsteps = 10\nsizes = [ 512 ]\n\n[inner]\npath = ''\nrepeats = 1\n\n");
  c.items.push_back(Inner{"p", 2});
  c.steps = 11;
  const std::string values = config_values(c);
  EXPECT_NE(values.find("steps = 11\n"), std::string::npos);
  EXPECT_NE(values.find("[[items]]\npath = 'p'\nrepeats = 2\n"), std::string::npos) << values;
  EXPECT_EQ(values.find('#'), std::string::npos);
  Outer back;
  read_config_text(values, "values.toml", {}, back);
  EXPECT_EQ(config_to_toml(back), config_to_toml(c));
  // A CacheKey::omit setting is read, printed and documented, but not part of the values.
  read_config_text("placement = 3\n", "p.toml", {}, back);
  EXPECT_EQ(back.placement, 3);
  EXPECT_NE(config_to_toml(back).find("# where it runs\nplacement = 3\n"), std::string::npos);
  EXPECT_EQ(config_values(back), values);
  // A CacheKey::when_set setting is part of the values only away from its default.
  read_config_text("later = ''\n", "l.toml", {}, back);
  EXPECT_EQ(config_values(back), values);
  read_config_text("later = 'x'\n", "l.toml", {}, back);
  EXPECT_NE(config_values(back).find("later = 'x'\n"), std::string::npos);
}

TEST(Config, ErrorsNameFileAndKey) {
  Outer c;
  auto message = [&](const std::string& text) {
    try {
      read_config_text(text, "bad.toml", {}, c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("lrr = 1"), "bad.toml: unknown setting 'lrr'");
  EXPECT_EQ(message("[inner]\nrepeats = 'x'"), "bad.toml: setting 'inner.repeats' must be an integer");
  EXPECT_NE(message("lr = [").find("bad.toml: line 1"), std::string::npos);
}

}  // namespace
}  // namespace dt
