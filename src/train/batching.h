// Orders and batches of plan items that are not drawn by make_plan (a delta store's records, a
// distillation's trajectory steps), with the same rules: seeded, the same on every machine, and
// one image size per batch.
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "train/plan.h"

namespace dt {

// Shuffles `v` by a Fisher–Yates walk over `rng`'s raw output: mt19937_64's output is fixed by
// the standard, std::shuffle's algorithm differs between standard libraries.
template <class T>
void seeded_shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
}

// `items`, in order, into batches of `epoch` holding at most `batch_size` items of one bucket size
// (samples[item.sample]'s width × height): one open batch per bucket, filled in order, appended to
// `batches`. `batch_of` (optional) receives each item's index in `batches`.
void append_bucket_batches(const std::vector<PlanItem>& items, const std::vector<PlanSample>& samples, int64_t batch_size,
                           int32_t epoch, std::vector<PlanBatch>& batches, std::vector<size_t>* batch_of = nullptr);

}  // namespace dt
