// The files deltatrain writes, read the way their clients read them. tests/fixtures/lora_clients/
// holds, per client (ComfyUI, diffusers) and family, what the client's own loading code does with
// every naming form of a LoRA on the family's golden model: which module names it takes, which
// weight rows each lands on, in which half order, with which scale, and the forms it refuses.
// scripts/lora_clients.py --fixtures wrote them by running that code (the versions are in each
// file); the same script checks the real clients end to end. Here every format is written for the
// golden model and replayed through the fixtures: each client a format is for must apply exactly
// deltatrain's delta to every weight, except for the client limits listed below.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/regex.h"
#include "io/safetensors.h"
#include "lora/file.h"
#include "testing/families.h"
#include "testing/support.h"

namespace dt::lora {
namespace {

using nlohmann::json;

const std::string kFixtures = std::string(DT_SOURCE_DIR) + "/tests/fixtures/lora_clients/";
const std::string kGolden = std::string(DT_SHARED_DIR) + "/golden/";

json load_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

// A LoRA on every Linear of the family's golden model: rank 4, alpha 2, one module at rank 2.
LoraWeights every_linear(const KeyMap& keys, const std::string& weights) {
  auto file = SafetensorsFile::open(weights);
  torch::manual_seed(7);
  LoraWeights w;
  w.family = keys.family;
  for (const auto& info : file->tensors()) {
    const std::string suffix = ".weight";
    if (info.shape.size() != 2 || info.name.size() <= suffix.size()) continue;
    const std::string module = info.name.substr(0, info.name.size() - suffix.size());
    auto r = resolve(keys, module, false);
    if (!r || r->native) continue;
    const int64_t rank = w.modules.empty() ? 2 : 4;
    w.modules.push_back({module, torch::randn({rank, info.shape[1]}), torch::randn({info.shape[0], rank}), rank / 2.0});
  }
  std::sort(w.modules.begin(), w.modules.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return w;
}

// The naming form of a written file, in the fixtures' terms.
struct Form {
  std::string prefix, names, pair, alpha, metadata;
  bool flat = false;
};

const char* const kPrefixes[] = {"diffusion_model.", "transformer.", "lora_unet_", ""};

std::string prefix_of(const std::string& key) {
  for (const char* p : kPrefixes)
    if (key.rfind(p, 0) == 0) return p;
  return "";
}

struct Adapter {
  at::Tensor down, up;
  std::optional<double> alpha;
};

// A written file's modules by stem, and the naming form of each prefix's part: a file may name
// some layers a second time for another client (FLUX.2's lora_unet_ copies), and both clients read
// such a file as its parts put together.
std::pair<std::map<std::string, Adapter>, std::map<std::string, Form>> open_written(const std::string& path, const KeyMap& keys) {
  auto file = SafetensorsFile::open(path);
  std::map<std::string, Adapter> modules;
  std::map<std::string, Form> forms;
  std::string metadata = "none";
  if (auto it = file->metadata().find("lora_adapter_metadata"); it != file->metadata().end())
    metadata = json::parse(it->second).contains("transformer.r") ? "peft-prefixed" : "peft";
  for (const auto& info : file->tensors()) {
    const std::string& key = info.name;
    auto cut = [&](const char* suffix) {
      const std::string s = suffix;
      return key.size() > s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0 ? key.substr(0, key.size() - s.size())
                                                                                        : std::string();
    };
    std::string stem;
    for (const char* suffix : {".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha"})
      if (stem.empty()) stem = cut(suffix);
    if (stem.empty()) {
      ADD_FAILURE() << path << ": unexpected tensor " << key;
      continue;
    }
    Form& form = forms[prefix_of(stem)];
    if (form.pair.empty()) {
      form = {prefix_of(stem), "diffusers", "A/B", "none", metadata, prefix_of(stem) == "lora_unet_"};
    }
    at::Tensor t = file->get(key).to(torch::kFloat);
    Adapter& a = modules[stem];
    if (!cut(".lora_A.weight").empty()) a.down = t;
    if (!cut(".lora_B.weight").empty()) a.up = t;
    if (!cut(".lora_down.weight").empty()) a.down = t, form.pair = "down/up";
    if (!cut(".lora_up.weight").empty()) a.up = t, form.pair = "down/up";
    if (!cut(".alpha").empty()) a.alpha = t.item<double>(), form.alpha = "tensor";
    auto r = resolve(keys, stem.substr(form.prefix.size()), form.flat);
    EXPECT_TRUE(r) << path << ": " << stem;
    if (r && r->native) form.names = "native";
  }
  return {modules, forms};
}

const json* find_form(const json& fixture, const Form& f) {
  for (const auto& p : fixture["forms"])
    if (p["prefix"] == f.prefix && p["names"] == f.names && p["flat"] == f.flat && p["pair"] == f.pair &&
        p["alpha"] == f.alpha && p["metadata"] == f.metadata)
      return &p;
  return nullptr;
}

// What deltatrain means the file to do, on the client's weights (native or diffusers names).
std::map<std::string, at::Tensor> intended(const LoraWeights& lora, const KeyMap& keys, bool native) {
  std::map<std::string, at::Tensor> out;
  for (const auto& m : lora.modules) {
    at::Tensor d = delta(m);
    NativeName n = native ? native_name(keys, m.name) : NativeName{m.name, nullptr, 0};
    const int64_t parts = n.rule ? static_cast<int64_t>(n.rule->diffusers.size()) : 1, rows = d.size(0);
    at::Tensor& whole = out[n.name];
    if (!whole.defined()) whole = torch::zeros({rows * parts, d.size(1)});
    if (n.rule && n.rule->swap_halves) d = torch::cat({d.slice(0, rows / 2), d.slice(0, 0, rows / 2)});
    whole.slice(0, static_cast<int64_t>(n.part) * rows, (static_cast<int64_t>(n.part) + 1) * rows) += d;
  }
  return out;
}

// The client's view of the file, replayed from the fixture form: per client weight, the sum of
// what the taken modules add; the stems the client does not take.
std::map<std::string, at::Tensor> replay(const std::map<std::string, Adapter>& modules, const json& form,
                                         const std::map<std::string, at::Tensor>& shapes, const json* metadata,
                                         std::vector<std::string>& not_taken) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [stem, a] : modules) {
    if (!form["modules"].contains(stem)) {
      not_taken.push_back(stem);
      continue;
    }
    const double rank = static_cast<double>(a.down.size(0));
    double scale = 1;
    if (form["scale"] == "alpha/rank" && a.alpha) scale = *a.alpha / rank;
    if (form["scale"] == "metadata" && metadata) {
      const json& m = *metadata;
      const std::string module = stem.substr(std::string(form["prefix"]).size());
      double r = m.at("transformer.r"), alpha = m.at("transformer.lora_alpha");
      if (m.contains("transformer.rank_pattern") && m["transformer.rank_pattern"].contains(module))
        r = m["transformer.rank_pattern"][module];
      if (m.contains("transformer.alpha_pattern") && m["transformer.alpha_pattern"].contains(module))
        alpha = m["transformer.alpha_pattern"][module];
      EXPECT_EQ(r, rank) << stem << ": the metadata's rank is not the file's";
      scale = alpha / r;
    }
    at::Tensor d = torch::matmul(a.up, a.down) * scale;
    for (const auto& piece : form["modules"][stem]) {
      const std::string target = piece["target"];
      at::Tensor part = d.slice(0, piece["rows"][0].get<int64_t>(), piece["rows"][0].get<int64_t>() + piece["rows"][1].get<int64_t>());
      if (piece["swap_halves"].get<bool>()) part = torch::cat({part.slice(0, part.size(0) / 2), part.slice(0, 0, part.size(0) / 2)});
      auto shape = shapes.find(target);
      if (shape == shapes.end()) {
        ADD_FAILURE() << stem << " lands on " << target << ", which deltatrain does not mean it for";
        continue;
      }
      at::Tensor& whole = out[target];
      if (!whole.defined()) whole = torch::zeros_like(shape->second);
      const int64_t at = piece["target_rows"][0];
      whole.slice(0, at, at + part.size(0)) += part;
    }
  }
  return out;
}

struct Case {
  std::string family, weights;
  // format → the clients it is for
  std::map<Format, std::set<std::string>> clients;
  // client limits, per client and format: modules (regex over the diffusers name) whose delta the
  // client does not apply exactly, with the reason; every other module must be exact.
  struct Limit {
    std::string client;
    Format format;
    std::string modules, reason;
  };
  std::vector<Limit> limits;
};

const Case kCases[] = {
    {"zimage",
     kGolden + "zimage_transformer/weights/diffusion_pytorch_model.safetensors",
     {{Format::comfyui, {"ComfyUI", "diffusers"}},
      {Format::peft, {"ComfyUI", "diffusers"}},
      {Format::kohya, {"diffusers"}},
      {Format::onetrainer, {"ComfyUI"}},
      {Format::original, {"ComfyUI", "diffusers"}},
      {Format::aitoolkit, {"ComfyUI", "diffusers"}},
      {Format::comfyui_native, {"ComfyUI"}}},
     {}},
    {"flux2-klein",
     kGolden + "flux2_transformer/weights/diffusion_pytorch_model.safetensors",
     {{Format::comfyui, {"ComfyUI", "diffusers"}},
      {Format::peft, {"ComfyUI", "diffusers"}},
      {Format::kohya, {"ComfyUI", "diffusers"}},
      {Format::onetrainer, {"ComfyUI"}},
      {Format::original, {}},
      {Format::aitoolkit, {"ComfyUI", "diffusers"}},
      {Format::comfyui_native, {"ComfyUI"}}},
     {{"diffusers", Format::aitoolkit, "^norm_out\\.linear$", "diffusers' FLUX.2 converter does not swap its halves"},
      {"diffusers", Format::kohya, "modulation|^norm_out\\.linear$", "diffusers' kohya FLUX.2 converter has no mapping"},
      {"ComfyUI", Format::onetrainer, "modulation|^time_guidance_embed\\.", "ComfyUI maps no diffusers name onto them"}}},
};

TEST(LoraClients, EveryFormatAppliesExactlyInTheClientsItIsFor) {
  dt::testing::ScratchDir dir("lora_clients");
  for (const Case& c : kCases) {
    const KeyMap& keys = dt::testing::key_map(c.family);
    const LoraWeights lora = every_linear(keys, c.weights);
    ASSERT_GT(lora.modules.size(), 10u);
    for (const std::string client : {"ComfyUI", "diffusers"}) {
      const json fixture = load_json(kFixtures + (client == "ComfyUI" ? "comfyui" : "diffusers") + "-" + c.family + ".json");
      const bool native = fixture["namespace"] == "native";
      std::map<std::string, at::Tensor> want = intended(lora, keys, native);
      for (const auto& [format, clients] : c.clients) {
        if (!clients.count(client)) continue;
        const std::string what = c.family + " " + format_name(format) + " in " + client;
        const std::string path = dir / (c.family + "." + format_name(format) + ".safetensors");
        write_lora(path, lora, keys, {.format = format});
        auto [modules, forms] = open_written(path, keys);
        std::optional<json> metadata;
        const auto written = SafetensorsFile::open(path);
        if (auto it = written->metadata().find("lora_adapter_metadata"); it != written->metadata().end())
          metadata = json::parse(it->second);
        std::map<std::string, at::Tensor> got;
        std::vector<std::pair<std::string, const Form*>> not_taken;
        for (const auto& [prefix, form] : forms) {
          const json* probe = find_form(fixture, form);
          ASSERT_NE(probe, nullptr) << what << ": the fixture has no probe of the naming form of " << prefix;
          ASSERT_TRUE((*probe)["error"].is_null()) << what << ": refused: " << (*probe)["error"];
          std::map<std::string, Adapter> part;
          for (const auto& [stem, a] : modules)
            if (prefix_of(stem) == prefix) part.emplace(stem, a);
          std::vector<std::string> skipped;
          for (auto& [target, d] : replay(part, *probe, want, metadata ? &*metadata : nullptr, skipped)) {
            at::Tensor& sum = got[target];
            sum = sum.defined() ? sum + d : d;
          }
          for (const auto& stem : skipped) not_taken.emplace_back(stem, &form);
        }
        // Modules under a client limit are compared nowhere; every other one must be taken and exact.
        std::vector<Regex> limited;
        for (const auto& l : c.limits)
          if (l.client == client && l.format == format) limited.emplace_back(l.modules);
        auto is_limited = [&](const std::string& module) {
          for (const auto& re : limited)
            if (re.search(module)) return true;
          return false;
        };
        std::set<std::string> skip;
        for (const auto& m : lora.modules)
          if (is_limited(m.name)) skip.insert(native ? native_name(keys, m.name).name : m.name);
        // A stem the client passes over is fine when another stem gave its layer (FLUX.2's copies).
        std::set<std::string> given;
        for (const auto& [stem, a] : modules)
          if (std::none_of(not_taken.begin(), not_taken.end(), [&](const auto& n) { return n.first == stem; }))
            if (auto r = resolve(keys, stem.substr(prefix_of(stem).size()), prefix_of(stem) == "lora_unet_"))
              given.insert(r->modules.begin(), r->modules.end());
        for (const auto& [stem, form] : not_taken) {
          auto r = resolve(keys, stem.substr(form->prefix.size()), form->flat);
          ASSERT_TRUE(r) << stem;
          for (const auto& module : r->modules)
            EXPECT_TRUE(is_limited(module) || given.count(module)) << what << ": not taken: " << stem;
        }
        for (const auto& [target, w] : want) {
          if (skip.count(target)) continue;
          auto it = got.find(target);
          if (it == got.end()) {
            ADD_FAILURE() << what << ": nothing applied to " << target;
            continue;
          }
          const double err = (it->second - w).abs().max().item<double>() / w.abs().max().item<double>();
          EXPECT_LE(err, 1e-5) << what << ": " << target;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dt::lora
