#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "world/dataset.h"
#include "world/latent_space.h"
#include "world/score.h"

namespace dt {

// deltatrain world render WORLD --out DIR [--images N] [--seed S] [--concept TRIGGER] [--set k=v]...
// deltatrain world score WORLD IMAGE...
// deltatrain world vae WORLD --out DIR [--set k=v]...
// deltatrain world build|eval|efficacy ...: world_models.cc
int run_world_build(int argc, char** argv);
int run_world_eval(int argc, char** argv);
int run_world_efficacy(int argc, char** argv);

int run_world(int argc, char** argv) {
  // build, eval and efficacy run models (world_models.cc); the other steps are the world's own.
  using Run = int (*)(int, char**);
  for (auto [step, run] : {std::pair<const char*, Run>{"build", run_world_build}, std::pair<const char*, Run>{"eval", run_world_eval},
                           std::pair<const char*, Run>{"efficacy", run_world_efficacy}})
    if (argc > 1 && !std::strcmp(argv[1], step)) {
      const std::string program = std::string(argv[0]) + " " + step;
      argv[1] = const_cast<char*>(program.c_str());
      return run(argc - 1, argv + 1);
    }
  const bool score = argc > 1 && !std::strcmp(argv[1], "score");
  const bool vae = argc > 1 && !std::strcmp(argv[1], "vae");
  std::string program = argv[0];
  if (argc > 1 && (score || vae || !std::strcmp(argv[1], "render"))) {
    program += std::string(" ") + argv[1];  // the step becomes part of the program name
    argv[1] = argv[0];
    --argc;
    ++argv;
  }
  CLI::App app(score ? "Read back the attributes of world images (the scene as its caption) and how far each is from a "
                       "clean rendering."
               : vae ? "Train the world's VAE (its [vae] table) on its images and write it as a diffusers VAE folder "
                       "(config.json, diffusion_pytorch_model.safetensors) with its measurements (latent_space.json)."
                     : "Render a dataset of a world (worlds/*.toml): PNG images with same-name .txt captions, of the Base's "
                       "world or of one concept. Steps: deltatrain world render|score|vae|build|eval|efficacy WORLD ...",
               program);
  std::string world_path, out, concept_trigger;
  std::vector<std::string> images, overrides;
  int64_t count = 0;
  uint64_t seed = 1;
  app.add_option("WORLD", world_path, "the world config (TOML)")->required();
  app.add_option("--set", overrides, "override a world setting: --set size=96 (repeatable)");
  if (score) {
    app.add_option("IMAGE", images, "PNG, JPEG or WebP images of the world's size")->required();
  } else if (vae) {
    app.add_option("--out", out, "the VAE folder to write (created; a pipeline's vae/)")->required();
  } else {
    app.add_option("--out", out, "the dataset folder to write (created)")->required();
    app.add_option("--images", count, "how many (default: 200 for the Base's world, the concept's `images`)")
        ->check(CLI::PositiveNumber);
    app.add_option("--seed", seed, "first scene seed; image i uses seed + i (default 1)");
    app.add_option("--concept", concept_trigger, "render this concept's dataset (its trigger word)");
  }
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  const world::World w = world::load_world(world_path, overrides);
  if (score) {
    for (const std::string& path : images) {
      const Image image = composite(read_image(path), Rgb{0, 0, 0});
      std::printf("%s\t%s\tinvalid %.4f\n", path.c_str(), w.caption(world::read_scene(w, image)).c_str(),
                  world::invalid_fraction(w, image));
    }
    return 0;
  }
  if (vae) {
    const world::LatentSpaceReport report = world::train_latent_space(w, out);
    std::printf("wrote %s: trained %lld steps in %s; held-out reconstructions: PSNR %.2f dB, invalid fraction %.4f\n",
                out.c_str(), static_cast<long long>(report.steps), format_duration(report.train_seconds).c_str(), report.psnr_db,
                report.invalid_fraction);
    for (const auto& [attribute, fraction] : report.accuracy)
      std::printf("  %-10s read back on %.2f%%\n", attribute.c_str(), 100 * fraction);
    return 0;
  }
  const int concept_index = concept_trigger.empty() ? -1 : w.concept_by_trigger(concept_trigger);
  if (count == 0) count = concept_index >= 0 ? w.concepts()[concept_index].images : 200;
  world::write_dataset(w, out, count, seed, concept_index);
  std::cout << "wrote " << count << " images with captions to " << out << "\n";
  return 0;
}

}  // namespace dt
