// The registered families' LoRA key tables, as the commands that read any family's LoRA use them.
#pragma once
#include <vector>

#include "lora/keymap.h"
#include "models/family.h"

namespace dt::testing {

inline const lora::KeyMap& key_map(const std::string& family) { return family_by_name(family).lora_keys(); }

inline std::vector<const lora::KeyMap*> all_key_maps() {
  std::vector<const lora::KeyMap*> out;
  for (const Family* f : families()) out.push_back(&f->lora_keys());
  return out;
}

}  // namespace dt::testing
