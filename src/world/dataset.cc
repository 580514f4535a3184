#include "world/dataset.h"

#include <cstdio>
#include <filesystem>

#include "io/atomic_file.h"

namespace dt::world {

void write_dataset(const World& world, const std::string& dir, int64_t count, uint64_t first_seed, int concept_index) {
  std::filesystem::create_directories(dir);
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t seed = first_seed + static_cast<uint64_t>(i);
    const Scene scene = concept_index >= 0 ? world.concept_scene(concept_index, seed) : world.base_scene(seed);
    char name[32];
    std::snprintf(name, sizeof name, "%06lld", static_cast<long long>(i));
    const std::filesystem::path base = std::filesystem::path(dir) / name;
    write_png(base.string() + ".png", world.render(scene));
    write_file_atomic(base.string() + ".txt", world.caption(scene) + "\n");
  }
}

}  // namespace dt::world
