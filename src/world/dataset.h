// A world's datasets on disk: `000000.png` + `000000.txt` (the caption) per image, a folder that
// `[[data.concepts]]` reads. Image i shows the scene of seed `first_seed` + i, so the same call
// writes the same bytes.
#pragma once
#include <cstdint>
#include <string>

#include "world/world.h"

namespace dt::world {

// The Base's scenes (concept_index −1) or those of one concept; each file written atomically.
void write_dataset(const World& world, const std::string& dir, int64_t count, uint64_t first_seed, int concept_index = -1);

}  // namespace dt::world
