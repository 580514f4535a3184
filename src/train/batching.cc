#include "train/batching.h"

#include <map>

namespace dt {

void append_bucket_batches(const std::vector<PlanItem>& items, const std::vector<PlanSample>& samples, int64_t batch_size,
                           int32_t epoch, std::vector<PlanBatch>& batches, std::vector<size_t>* batch_of) {
  std::map<std::pair<int64_t, int64_t>, size_t> open;  // bucket → index in batches
  if (batch_of) batch_of->clear();
  for (const PlanItem& item : items) {
    const PlanSample& s = samples.at(item.sample);
    const auto bucket = std::make_pair(s.width, s.height);
    auto it = open.find(bucket);
    if (it == open.end()) {
      it = open.emplace(bucket, batches.size()).first;
      batches.push_back({epoch, {}});
    }
    batches[it->second].items.push_back(item);
    if (batch_of) batch_of->push_back(it->second);
    if (static_cast<int64_t>(batches[it->second].items.size()) == batch_size) open.erase(it);
  }
}

}  // namespace dt
