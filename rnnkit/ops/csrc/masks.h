// Bernoulli masks from a counter-based hash (masks.cpp, ops/masks.py's rule), and one direction's
// variant masks drawn with them as ops/variant.py's ``noise`` draws them.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

namespace rnnkit {

// A tensor of ``shape`` whose elements are ``value`` where their hash is below ``threshold``, else 0.
at::Tensor hashed_bernoulli(at::IntArrayRef shape, int64_t threshold, at::ScalarType dtype, double value);

// round(p 2^32) for p clamped to [0, 1], halves to even as Python's round (ops/masks.py's threshold).
inline int64_t threshold_of(double p) {
  return static_cast<int64_t>(std::nearbyint(std::clamp(p, 0.0, 1.0) * 4294967296.0));
}

// One direction's recurrent-dropout mask (B, sizes[0]) and zoneout keep tensors (T, B, size) per
// state (h, then an LSTM's c), or none: the masks ops/variant.py's ``noise`` draws, in its order,
// from the same generator, so a seed gives the same masks either way.
struct Noise {
  std::optional<at::Tensor> mask;
  std::vector<std::optional<at::Tensor>> zone;  // one per state, none without zoneout
};

inline Noise draw_noise(double dropout, double z_h, double z_c, bool training, int64_t T, int64_t B,
                        const std::vector<int64_t>& sizes, const at::TensorOptions& options) {
  const at::ScalarType dtype = options.dtype().toScalarType();
  Noise noise{std::nullopt, std::vector<std::optional<at::Tensor>>(sizes.size())};
  if (training && dropout > 0) {
    noise.mask = hashed_bernoulli({B, sizes[0]}, threshold_of(1 - dropout), dtype, 1 / (1 - dropout));
  }
  if (z_c > 0 || z_h > 0) {
    const double z[] = {z_h, z_c};
    for (size_t k = 0; k < sizes.size(); ++k) {
      noise.zone[k] = training ? hashed_bernoulli({T, B, sizes[k]}, threshold_of(z[k]), dtype, 1.0)
                               : at::full({1, 1, 1}, z[k], options).expand({T, B, sizes[k]});
    }
  }
  return noise;
}

}  // namespace rnnkit
