#include "train/tiny_world.h"

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "data/image.h"
#include "io/atomic_file.h"
#include "models/flux2/tiny.h"
#include "models/zimage/config.h"
#include "models/zimage/weights.h"
#include "text/qwen3.h"
#include "text/tiny_tokenizer.h"
#include "vae/random_vae.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

constexpr int32_t kVocab = 512;
constexpr int64_t kTextHidden = 64;

ZImageConfig tiny_zimage() {
  ZImageConfig c;
  c.dim = 64;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.n_layers = 2;
  c.n_refiner_layers = 1;
  c.cap_feat_dim = kTextHidden;
  c.axes_dims = {8, 12, 12};
  c.axes_lens = {512, 64, 64};
  return c;
}

Qwen3Config tiny_qwen3() {
  Qwen3Config c;
  c.vocab_size = kVocab;
  c.hidden_size = kTextHidden;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 32;
  c.rope_theta = 1e6;
  return c;
}

// Four levels: 8 pixels per latent, as the real VAE.
VaeConfig tiny_vae() {
  VaeConfig c = vae::tiny_vae_config(VaeKind::kAutoencoderKL);
  c.block_out_channels = c.decoder_block_out_channels = {16, 32, 32, 32};
  return c;
}

void write_pipeline(const fs::path& dir, uint64_t transformer_seed) {
  zimage::write_random_checkpoint((dir / "transformer").string(), tiny_zimage(), transformer_seed);
  write_random_qwen3((dir / "text_encoder").string(), tiny_qwen3(), 11);
  write_tiny_tokenizer((dir / "tokenizer").string(), kVocab);
  vae::write_random_vae((dir / "vae").string(), tiny_vae(), 12);
  fs::create_directories(dir / "scheduler");
  write_file_atomic((dir / "scheduler" / "scheduler_config.json").string(),
                    nlohmann::json{{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                                   {"num_train_timesteps", 1000},
                                   {"shift", 3.0},
                                   {"use_dynamic_shifting", false}}
                        .dump(2));
  write_file_atomic((dir / "model_index.json").string(),
                    nlohmann::json{{"_class_name", "ZImagePipeline"},
                                   {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                                   {"text_encoder", {"transformers", "Qwen3Model"}},
                                   {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
                                   {"transformer", {"diffusers", "ZImageTransformer2DModel"}},
                                   {"vae", {"diffusers", "AutoencoderKL"}}}
                        .dump(2));
}

// Images a LoRA can learn: a shape of one colour on a background of another, named in the caption.
void write_dataset(const fs::path& dir, int count, int64_t size) {
  struct Colour {
    const char* name;
    uint8_t r, g, b;
  };
  static const Colour colours[] = {{"red", 220, 40, 40},   {"blue", 40, 70, 220}, {"yellow", 240, 210, 40},
                                   {"green", 40, 170, 70}, {"white", 245, 245, 245}, {"black", 20, 20, 20}};
  fs::create_directories(dir);
  for (int i = 0; i < count; ++i) {
    const Colour& fg = colours[i % 6];
    const Colour& bg = colours[(i + 3 + i / 6) % 6 == i % 6 ? (i + 4) % 6 : (i + 3 + i / 6) % 6];
    const bool circle = i % 2 == 0;
    Image img;
    img.width = img.height = size;
    img.pixels.resize(static_cast<size_t>(size * size * 3));
    const double cx = size * (0.35 + 0.3 * ((i * 37) % 10) / 10.0), cy = size * (0.35 + 0.3 * ((i * 53) % 10) / 10.0);
    const double radius = size * 0.22;
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x) {
        const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const bool inside = circle ? dx * dx + dy * dy < radius * radius : std::abs(dx) < radius && std::abs(dy) < radius;
        const Colour& c = inside ? fg : bg;
        uint8_t* p = img.at(x, y);
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
      }
    char name[32];
    std::snprintf(name, sizeof(name), "shape_%02d", i);
    write_png((dir / (std::string(name) + ".png")).string(), img);
    const std::string caption = std::string("a ") + fg.name + (circle ? " circle" : " square") + " on a " + bg.name + " background";
    write_file_atomic((dir / (std::string(name) + ".txt")).string(), caption + "\n" + "tiny " + fg.name + " shape\n");
  }
}

}  // namespace

RunConfig tiny_train_config() {
  RunConfig run;
  run.model.family = "zimage";
  run.model.base = "base";
  run.model.dtype = "fp32";
  run.data.cache_dir = "cache";
  run.data.resolutions = {64};
  run.data.aspect_ratios = {1.0};
  ConceptConfig shapes;
  shapes.name = "shapes";
  shapes.path = "dataset/shapes";
  run.data.concepts = {shapes};
  run.lora.rank = 4;
  run.lora.alpha = 4;
  run.train.epochs = 8;
  run.train.batch_size = 2;
  run.train.learning_rate = 1e-3;
  run.train.warmup_steps = 2;
  run.train.checkpoint_every = 4;
  run.train.save_every = 16;
  run.output.run_dir = "run";
  return run;
}

std::string tiny_student_folder(const std::string& family) { return family == "flux2-klein" ? "distilled" : "turbo"; }

void make_tiny_world(const std::string& dir, const TinyWorldOptions& o) {
  const bool flux2 = o.family == "flux2-klein";
  if (o.family != "zimage" && !flux2)
    throw Error("make-tiny: no tiny world for the family '" + o.family + "' (known: zimage, flux2-klein)");
  if (o.images < 1 || o.resolution < 16 || o.resolution % 16 != 0)
    throw Error("make-tiny: needs at least one image and a resolution that is a multiple of 16");
  const fs::path root(dir);
  fs::create_directories(root);
  const std::string student = tiny_student_folder(o.family);
  if (flux2) {  // klein Base and distilled share text encoder and VAE, as the real pair
    flux2::write_tiny_pipeline((root / "base").string(), 1, false);
    flux2::write_tiny_pipeline((root / student).string(), 1, true);
  } else {
    write_pipeline(root / "base", 1);
    write_pipeline(root / student, 2);
  }
  write_dataset(root / "dataset" / "shapes", o.images, o.resolution);

  RunConfig train = tiny_train_config();
  train.data.resolutions = {o.resolution};
  train.model.family = o.family;
  if (flux2) train.lora.preset = "blocks";  // OneTrainer's FLUX.2 default
  write_file_atomic((root / "train.toml").string(),
                    "# Tiny smoke-test run: deltatrain train train.toml (paths are relative to this file).\n" +
                        config_to_toml(train));
  // The transfer example: the LoRA trained by train.toml on the tiny Base, taught to the tiny Turbo.
  RunConfig transfer = train;
  transfer.output.run_dir = "transfer-run";
  transfer.transfer.teacher_lora = "run/lora.safetensors";
  transfer.transfer.student = student;
  write_file_atomic((root / "transfer.toml").string(),
                    "# Tiny delta transfer: deltatrain transfer transfer.toml, after train.toml has run.\n" +
                        config_to_toml(transfer));
}

}  // namespace dt
