// Sinusoidal timestep embedding (DiT / diffusers convention), computed in float32.
#pragma once
#include <ATen/Tensor.h>

namespace dt::nn {

// t: [B] (already scaled to the model's time range). Frequencies f_j = exp(−ln(max_period)·j /
// (half − freq_shift)), j < half = dim/2; returns [B, dim] = [cos(t·f), sin(t·f)] (cosines first,
// as Z-Image and FLUX use it), zero-padded by one column when dim is odd.
at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, double max_period = 10000.0,
                              double freq_shift = 0.0);

}  // namespace dt::nn
