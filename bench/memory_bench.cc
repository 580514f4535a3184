// Real-size transformers in host memory: the released Z-Image (6.2 B parameters) and FLUX.2 klein
// 4B / 9B configs with random weights written to a checkpoint folder on disk (never kept in the
// repository), then, in a fresh process per measurement, loaded as a run loads them and trained for
// one LoRA step, with the resident set size (VmRSS) and its peak (VmHWM, reset between phases
// through /proc/self/clear_refs) at each phase.
//
//   build/memory_bench write zimage|klein-4b|klein-9b DIR [--fp8]
//       a diffusers transformer folder in bf16 (--fp8: its block matrices as random E4M3 codes with
//       a per-tensor scale_weight, as ComfyUI's "scaled fp8" files hold them). Each matrix is one random row repeated (a broadcast
//       view made contiguous one tensor at a time while writing), so writing never holds more than
//       one tensor; the values matter to neither memory nor time.
//   build/memory_bench step DIR [--weights dense|int8|fp8] [--side 256] [--text-tokens 128]
//                        [--rank 16] [--checkpointing on|off] [--threads N]
//       load (bf16, mmap) as a run does, the block weights stored in 8 bits as they are read if asked, attach a rank-16 attn-mlp
//       LoRA with AdamW, and run one training step at side × side pixels; prints one line of
//       key=value pairs (sizes in GiB).
//   build/memory_bench write qwen3-4b|qwen3-8b DIR
//   build/memory_bench encode DIR [--layers 9,18,27 | --layers z]
//       the text encoders of Z-Image (Qwen3-4B, hidden state −2) and klein 4B / 9B (Qwen3-4B /
//       8B, hidden states 9, 18, 27): load in bf16, read every weight, encode one prompt of 512
//       tokens (random ids; the tokenizer costs nothing here).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "bench_util.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "lora/adapters.h"
#include "models/family.h"
#include "models/flux2/config.h"
#include "models/flux2/transformer.h"
#include "models/zimage/config.h"
#include "models/zimage/transformer.h"
#include "text/qwen3.h"
#include "sample/generate.h"
#include "train/objective.h"
#include "train/optimizer.h"

namespace {

using dt::bench::option;
using Clock = std::chrono::steady_clock;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// VmRSS or VmHWM of this process, GiB.
double status_gib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) * 1024 / kGiB;
  return NAN;
}

// Starts a new peak: VmHWM becomes the current VmRSS.
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

// The parameters of `model` as bf16 tensors that are broadcast views of one random row (or one
// vector), so that the whole set costs almost no memory until the writer makes each contiguous.
dt::NamedTensors broadcast_weights(torch::nn::Module& model) {
  torch::manual_seed(0);
  dt::NamedTensors out;
  for (const auto& item : model.named_parameters()) {
    const at::Tensor& p = item.value();
    at::Tensor t;
    // Converted before the broadcast: converting a broadcast view would make it whole.
    if (p.dim() == 2) {
      t = (torch::randn({1, p.size(1)}) / std::sqrt(static_cast<double>(p.size(1)))).to(at::kBFloat16).expand(p.sizes());
    } else {
      const bool bias = item.key().size() > 5 && item.key().compare(item.key().size() - 5, 5, ".bias") == 0;
      t = (bias ? torch::zeros(p.sizes()) : 1 + 0.1 * torch::randn(p.sizes())).to(at::kBFloat16);
    }
    out.emplace_back(item.key(), t);
  }
  return out;
}

// `tensors` as a ComfyUI "scaled fp8" single file: every matrix of the transformer blocks as random
// E4M3 codes (no NaN) with a per-tensor scale_weight, everything else as given, and the scaled_fp8
// marker. Written one tensor at a time (largest element size first, so every tensor is aligned).
void write_scaled_fp8(const std::string& path, const dt::NamedTensors& tensors) {
  struct Entry {
    std::string name, dtype;
    at::Tensor value;  // made on demand for the codes
    std::vector<int64_t> shape;
    size_t element;
  };
  std::vector<Entry> entries;
  const std::regex block(R"(^(transformer_blocks|single_transformer_blocks|layers|noise_refiner|context_refiner)\.)");
  for (const auto& [name, t] : tensors) {
    if (t.dim() == 2 && std::regex_search(name, block)) {
      entries.push_back({name, "F8_E4M3", {}, t.sizes().vec(), 1});
      entries.push_back({name.substr(0, name.size() - 7) + ".scale_weight", "F32", torch::full({}, 1e-4f), {}, 4});
    } else {
      entries.push_back({name, "BF16", t, t.sizes().vec(), 2});
    }
  }
  entries.push_back({"scaled_fp8", "F8_E4M3", torch::empty({0}, at::kByte), {0}, 1});
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.element > b.element; });
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    uint64_t bytes = e.element;
    for (int64_t d : e.shape) bytes *= static_cast<uint64_t>(d);
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = h.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const Entry& e : entries) {
    at::Tensor t = e.value.defined() ? e.value.contiguous()
                                     : torch::randint(0, 0x7F, e.shape, at::kByte).bitwise_or_(torch::randint(0, 2, e.shape, at::kByte) * 0x80);
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  }
  if (!out) throw dt::Error("could not write " + path);
}

int write(const std::string& which, const std::string& dir, bool fp8) {
  dt::NamedTensors tensors;
  nlohmann::json config;
  std::string weights_file = "diffusion_pytorch_model.safetensors";
  if (which == "zimage") {
    const dt::ZImageConfig c;  // the released model
    dt::zimage::ZImageTransformer model(c);  // parameters allocated, never touched
    tensors = broadcast_weights(*model), config = c.to_json();
  } else if (which == "klein-4b" || which == "klein-9b") {
    dt::Flux2Config c;  // klein 4B
    if (which == "klein-9b") c.num_layers = 8, c.num_single_layers = 24, c.num_attention_heads = 32, c.joint_attention_dim = 12288;
    dt::flux2::Flux2Transformer model(c);
    tensors = broadcast_weights(*model), config = c.to_json();
  } else if (which == "qwen3-4b" || which == "qwen3-8b") {
    const bool big = which == "qwen3-8b";
    const dt::Qwen3Config c{.vocab_size = 151936, .hidden_size = big ? 4096 : 2560, .intermediate_size = big ? 12288 : 9728,
                            .num_hidden_layers = 36, .num_attention_heads = 32, .num_key_value_heads = 8, .head_dim = 128,
                            .rope_theta = 1e6, .tie_word_embeddings = !big};
    dt::Qwen3Encoder model(c, !c.tie_word_embeddings);
    tensors = broadcast_weights(model), config = c.to_json(), weights_file = "model.safetensors";
  } else {
    std::fprintf(stderr, "write: the model must be zimage, klein-4b, klein-9b, qwen3-4b or qwen3-8b\n");
    return 2;
  }
  double params = 0;
  for (const auto& [name, t] : tensors) params += static_cast<double>(t.numel());
  const auto start = Clock::now();
  if (fp8) {
    std::filesystem::create_directories(dir);
    write_scaled_fp8((std::filesystem::path(dir) / weights_file).string(), tensors);
    std::ofstream((std::filesystem::path(dir) / "config.json").string()) << config.dump(2);
  } else {
    dt::write_model_folder(dir, weights_file, tensors, config);
  }
  std::printf("%s: %.3f B parameters, %.2f GiB in bf16, written in %.0f s\n", which.c_str(), params / 1e9,
              params * 2 / kGiB, seconds_since(start));
  return 0;
}

int step(int argc, char** argv, const std::string& dir) {
  const std::string weights = option(argc, argv, "--weights", "dense");
  const int64_t side = std::stoll(option(argc, argv, "--side", "256"));
  const int64_t rank = std::stoll(option(argc, argv, "--rank", "16"));
  const bool checkpointing = option(argc, argv, "--checkpointing", "on") == "on";
  const dt::WeightFormat format = dt::weight_format_by_name(weights == "dense" ? "" : weights, "--weights");
  const dt::Family& family = dt::detect_family(dir);
  const nlohmann::json config = dt::Checkpoint::open(dir).config();
  // Text features as the family's transformer takes them: Z-Image the valid caption tokens, klein
  // always 512 positions of three stacked hidden states.
  const bool zimage = family.name() == "zimage";
  const int64_t text_tokens = zimage ? std::stoll(option(argc, argv, "--text-tokens", "128")) : 512;
  const int64_t text_dim = zimage ? config.at("cap_feat_dim").get<int64_t>() : config.at("joint_attention_dim").get<int64_t>();

  reset_peak();
  auto start = Clock::now();
  dt::LoadOptions options;
  options.compute_dtype = at::kBFloat16;
  options.block_weights = format;  // as a run loads: the blocks stored in 8 bits as they are read
  std::unique_ptr<dt::Denoiser> model = family.load_transformer(dir, options);
  for (auto& p : model->module().parameters()) p.requires_grad_(false);
  double parameters = 0;
  for (const auto& p : model->module().parameters()) parameters += static_cast<double>(p.numel());
  const double load_s = seconds_since(start), bf16_bytes = parameters * 2 / kGiB;
  // The weights are a memory map until read: the first read (8-bit: the quantization) brings them in.
  start = Clock::now();
  if (format == dt::WeightFormat::dense) {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->module().parameters()) p.sum();
  }
  dt::store_and_place(*model, format, 0, c10::kCPU);
  const double read_s = seconds_since(start), weight_bytes = dt::bench::weight_bytes(model->module()) / kGiB;
  const double load_peak = status_gib("VmHWM"), rss_loaded = status_gib("VmRSS");

  dt::lora::AdapterOptions lo;
  lo.rank = rank;
  lo.alpha = static_cast<double>(rank);
  const auto layers = dt::lora::select_layers(model->module(), {"attn-mlp", {}, {}}, family.lora_presets());
  auto adapters = dt::lora::Adapters::create(model->module(), model->lora_state(), layers, lo);
  double lora_params = 0;
  for (const auto& p : adapters.parameters()) lora_params += static_cast<double>(p.numel());
  dt::AdamW optimizer(adapters.parameters(), {});
  model->set_gradient_checkpointing(checkpointing);
  model->module().train();

  std::vector<int64_t> shape = family.latent_shape(side, side);
  shape.insert(shape.begin(), 1);
  dt::Batch batch;
  batch.x0 = torch::randn(shape);
  batch.noise = torch::randn(shape);
  batch.sigma = torch::tensor({0.6f});
  batch.x_t = dt::noised(batch.x0, batch.noise, batch.sigma).to(at::kBFloat16);
  batch.loss_weight = torch::ones({1});
  batch.text = {torch::randn({text_tokens, text_dim}).to(at::kBFloat16)};
  dt::FlowObjective flow;
  auto train_step = [&] {
    flow.step(*model, batch).loss.backward();
    optimizer.step(1e-4);
    optimizer.zero_grad();
  };
  start = Clock::now();
  train_step();  // the first step: the allocator's and the kernels' first use
  const double first_s = seconds_since(start), rss_before_step = status_gib("VmRSS");
  reset_peak();
  start = Clock::now();
  train_step();
  const double step_s = seconds_since(start), step_peak = status_gib("VmHWM");

  std::printf("%s weights=%s side=%ld text=%ld rank=%ld checkpointing=%s threads=%d | load_s=%.1f read_s=%.1f "
              "bf16_weights=%.2f weights=%.2f load_peak=%.2f rss_loaded=%.2f lora_M=%.1f first_step_s=%.1f step_s=%.1f "
              "rss_before_step=%.2f step_peak=%.2f step_extra=%.2f\n",
              family.name().c_str(), weights.c_str(), side, text_tokens, rank, checkpointing ? "on" : "off",
              at::get_num_threads(), load_s, read_s, bf16_bytes, weight_bytes, load_peak, rss_loaded, lora_params / 1e6,
              first_s, step_s, rss_before_step, step_peak, step_peak - rss_before_step);
  return 0;
}

int encode(int argc, char** argv, const std::string& dir) {
  reset_peak();
  auto start = Clock::now();
  dt::LoadOptions options;
  options.compute_dtype = at::kBFloat16;
  auto encoder = dt::Qwen3Encoder::load(dir, options, /*lm_head=*/false);
  const double load_s = seconds_since(start), bytes = dt::bench::weight_bytes(*encoder) / kGiB;
  start = Clock::now();
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : encoder->parameters()) p.sum();
  }
  const double read_s = seconds_since(start), load_peak = status_gib("VmHWM"), rss_loaded = status_gib("VmRSS");
  const int64_t layers = encoder->config.num_hidden_layers;
  const std::vector<int64_t> indices = option(argc, argv, "--layers", "z") == "z" ? std::vector<int64_t>{layers - 1}
                                                                                   : std::vector<int64_t>{9, 18, 27};
  const at::Tensor ids = torch::randint(0, encoder->config.vocab_size, {1, 512}, at::kLong);
  const at::Tensor mask = torch::ones({1, 512}, at::kLong);
  torch::NoGradGuard no_grad;
  encoder->hidden_states(ids, mask, indices);  // first use
  reset_peak();
  const double before = status_gib("VmRSS");
  start = Clock::now();
  encoder->hidden_states(ids, mask, indices);
  const double encode_s = seconds_since(start), peak = status_gib("VmHWM");
  std::printf("qwen3 hidden %ld, %ld layers, states %s | load_s=%.1f read_s=%.1f weights=%.2f load_peak=%.2f "
              "rss_loaded=%.2f encode_512_s=%.1f encode_peak=%.2f encode_extra=%.2f\n",
              encoder->config.hidden_size, layers, indices.size() == 1 ? "-2" : "9,18,27", load_s, read_s, bytes, load_peak,
              rss_loaded, encode_s, peak, peak - before);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!option(argc, argv, "--threads", "").empty()) setenv("DT_THREADS", option(argc, argv, "--threads", "").c_str(), 1);
  dt::init_runtime();
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "write" && argc >= 4)
    return write(argv[2], argv[3], std::find(argv + 1, argv + argc, std::string("--fp8")) != argv + argc);
  if (command == "step" && argc >= 3) return step(argc, argv, argv[2]);
  if (command == "encode" && argc >= 3) return encode(argc, argv, argv[2]);
  std::fprintf(stderr, "usage: memory_bench write zimage|klein-4b|klein-9b DIR | step DIR [--weights dense|int8|fp8] [--side N]\n");
  return 2;
}
