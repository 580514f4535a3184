// deltatrain world build WORLD --out DIR [--family F] [--set k=v]...
// deltatrain world eval WORLD --model PIPELINE [--steps N] [--cfg W] [--prompts N] [--concept T]
//                             [--lora FILE[:STRENGTH]]... [--images DIR] [--json FILE] [--set k=v]...
// deltatrain world efficacy WORLD --out DIR [--family F] [--concept T]... [--report FILE] [--jobs N] [--set k=v]...
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "data/image.h"
#include "io/atomic_file.h"
#include "models/family.h"
#include "run/world_build.h"
#include "run/world_efficacy.h"
#include "sample/output.h"

namespace dt {
namespace {

// The world, its overrides, the family and the build's folder: what `world build` and `world
// efficacy` both read.
void add_build_options(CLI::App& app, WorldBuildOptions& o, const std::string& out_help) {
  app.add_option("WORLD", o.world, "the world config (TOML) with a [[models]] table")->required();
  app.add_option("--out", o.out, out_help)->required();
  app.add_option("--family", o.family, "which [[models]] table (default: the first)");
  app.add_option("--set", o.overrides, "override a world setting (repeatable; [[models]] tables are edited in the file)");
}

// Runs this program again with `args` (argv[1]…), its output to `log`; the returned function waits
// for it and gives its exit status (128 + the signal when one ended it).
std::function<int()> start_self(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all = {"deltatrain"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw file_error(log, "cannot be written");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    throw Error("cannot start a worker process");
  }
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(fd);
  return [pid] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
      if (errno != EINTR) return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  };
}

}  // namespace

int run_world_build(int argc, char** argv) {
  CLI::App app("Make a world's Base (trained from scratch) and Turbo (distilled from it) from its config, stage by stage, "
               "each stage cached in the output folder (a rerun redoes what changed), and score both on held-out prompts.",
               argv[0]);
  WorldBuildOptions o;
  add_build_options(app, o, "the folder of the build (created)");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  const WorldBuild b = build_world(o);
  std::cout << "Base: " << b.base << "\nTurbo: " << b.turbo << "\n";
  return 0;
}

int run_world_eval(int argc, char** argv) {
  CLI::App app("Sample held-out prompts of a world with a model (and LoRAs) and score the images: the fraction read "
               "back as prompted, per attribute.",
               argv[0]);
  std::string world_path, model, family_name, concept_trigger, images_dir, json_path;
  std::vector<std::string> overrides, loras;
  WorldEvalOptions o;
  app.add_option("WORLD", world_path, "the world config (TOML)")->required();
  app.add_option("--model", model, "the pipeline folder")->required();
  app.add_option("--family", family_name, "model family (default: detected from the transformer)");
  app.add_option("--steps", o.steps, "sampling steps")->check(CLI::PositiveNumber);
  app.add_option("--cfg", o.cfg, "standard CFG weight (1 = none)");
  app.add_option("--prompts", o.prompts, "how many held-out prompts")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "first scene and noise seed");
  app.add_option("--concept", concept_trigger, "prompts of this concept (its trigger word) instead of the Base's world");
  app.add_option("--lora", loras, "LoRA file, optionally FILE:STRENGTH (repeatable)");
  app.add_option("--images", images_dir, "also write the images here");
  app.add_option("--json", json_path, "write the scores here");
  app.add_option("--set", overrides, "override a world setting (repeatable)");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  const world::World w = world::load_world(world_path, overrides);
  if (!concept_trigger.empty()) o.concept_index = w.concept_by_trigger(concept_trigger);
  const Family& family = family_name.empty() ? detect_family(model) : family_by_name(family_name);
  o.models = {&family, model, model, model, {}};
  for (const std::string& spec : loras) o.loras.push_back(parse_lora_file(spec));
  std::vector<Image> images;
  const WorldScore s = evaluate_world(w, o, &images);
  nlohmann::json j = {{"model", model}, {"steps", o.steps}, {"cfg", o.cfg}, {"images", s.images},
                      {"accuracy", s.accuracy}, {"invalid", s.invalid}};
  std::cout << j.dump(2) << "\n";
  if (!json_path.empty()) write_file_atomic(json_path, j.dump(2) + "\n");
  if (!images_dir.empty()) {
    std::filesystem::create_directories(images_dir);
    for (size_t i = 0; i < images.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%04zu.png", i);
      write_png((std::filesystem::path(images_dir) / name).string(), images[i]);
    }
  }
  return 0;
}

int run_world_efficacy(int argc, char** argv) {
  CLI::App app("Measure delta transfer on a world's Base and Turbo (built first when missing): concept LoRAs on the Base, "
               "the arms of the efficacy table on the Turbo, per concept and seed, each stage cached in the build folder; "
               "writes the table (markdown) and a labelled grid per concept.",
               argv[0]);
  WorldEfficacyOptions o;
  add_build_options(app, o.build, "the world build's folder (the table's stages go to <out>/efficacy)");
  app.add_option("--built", o.built, "measure the Base and Turbo of this built folder as is (worlds/shapes/zimage: the shipped ones) "
                 "instead of building them in --out");
  app.add_option("--concept", o.concepts, "only this concept (trigger word; repeatable; default: every concept)");
  app.add_option("--report", o.report, "markdown file whose section for this family is replaced by the table (grids copied beside it)");
  app.add_option("--jobs", o.jobs, "measure the concepts in this many processes at once (their stages are independent; give each "
                 "DT_THREADS = cores / jobs); the table is then assembled from their cached stages")
      ->check(CLI::PositiveNumber);
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  o.worker = [&o](const std::vector<std::string>& concepts, const std::string& log) {
    std::vector<std::string> args = {"world", "efficacy", o.build.world, "--out", o.build.out};
    if (!o.built.empty()) args.insert(args.end(), {"--built", o.built});
    if (!o.build.family.empty()) args.insert(args.end(), {"--family", o.build.family});
    for (const std::string& s : o.build.overrides) args.insert(args.end(), {"--set", s});
    for (const std::string& c : concepts) args.insert(args.end(), {"--concept", c});
    return start_self(args, log);
  };
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(i == 0 ? "deltatrain world efficacy" : argv[i]);
  const WorldEfficacy r = measure_efficacy(o);
  std::cout << r.markdown;
  return 0;
}

}  // namespace dt
