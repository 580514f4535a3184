#include "run/tiny_world.h"

#include <cmath>
#include <filesystem>

#include "core/config.h"
#include "core/error.h"
#include "data/image.h"
#include "io/atomic_file.h"
#include "models/family.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

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
  run.model.family = families().front()->name();
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

void make_tiny_world(const std::string& dir, const TinyWorldOptions& o) {
  const Family& family = family_or_first(o.family);
  if (o.images < 1 || o.resolution < 16 || o.resolution % family.pixel_multiple() != 0)
    throw Error("make-tiny: needs at least one image and a resolution that is a multiple of " +
                std::to_string(family.pixel_multiple()));
  const fs::path root(dir);
  const bool existed = fs::exists(root);
  fs::create_directories(root);
  // Base and distilled share text encoder and VAE (one seed), as the real pairs do.
  const std::string student = family.defaults().distilled_name;
  try {
    family.write_tiny_pipeline((root / "base").string(), 1, false, o.transformer_config);
  } catch (const Error&) {
    if (!existed) fs::remove_all(root);  // a refused --transformer-config leaves nothing behind
    throw;
  }
  family.write_tiny_pipeline((root / student).string(), 1, true, o.transformer_config);
  write_dataset(root / "dataset" / "shapes", o.images, o.resolution);

  RunConfig train = tiny_train_config();
  train.data.resolutions = {o.resolution};
  train.model.family = family.name();
  train.lora.preset = family.defaults().lora_preset;
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
