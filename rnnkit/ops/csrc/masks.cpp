// Bernoulli masks from a counter-based hash, every element on its own, the threads splitting them:
// ops/masks.py's rule (its hashed_bits is the specification), bit for bit.
//   k0, k1     two 32-bit words drawn here from torch's CPU generator, as ops/masks.py draws its key
//              (torch.randint(0, 2^32, (2,))): the same seed gives the same masks either way
//   threshold  round(p 2^32): element i is ``value`` where mix(mix(i + k0) ^ k1) < threshold, else 0
//              (value 1 / (1 - p) gives dropout's scaled mask in the same pass)
#include <ATen/ops/randint.h>
#include <torch/library.h>

#include "common.h"

namespace rnnkit {
namespace {

// lowbias32: every output bit depends on every input bit; a bijection of 32-bit words.
inline uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

at::Tensor hashed_bernoulli(at::IntArrayRef shape, int64_t threshold, at::ScalarType dtype, double value) {
  TORCH_CHECK(0 <= threshold && threshold <= (int64_t(1) << 32),
              "hashed_bernoulli: expected a threshold in [0, 2^32], got ", threshold);
  const at::Tensor key = at::randint(0, int64_t(1) << 32, {2}, at::kLong);
  const uint32_t k0 = static_cast<uint32_t>(key.data_ptr<int64_t>()[0]);
  const uint32_t k1 = static_cast<uint32_t>(key.data_ptr<int64_t>()[1]);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES(dtype, "hashed_bernoulli", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t one = static_cast<scalar_t>(value);
    if (threshold == (int64_t(1) << 32)) {  // p = 1: every word is below it
      std::fill(o, o + out.numel(), one);
      return;
    }
    const uint32_t below = static_cast<uint32_t>(threshold);
    at::parallel_for(0, out.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      // A local copy: read through the capture, ``one`` might alias o[i], and the loop would not be
      // vectorised (12x slower).
      const scalar_t kept = one;
      for (int64_t i = begin; i < end; ++i) {
        o[i] = mix(mix(static_cast<uint32_t>(i) + k0) ^ k1) < below ? kept : scalar_t(0);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("hashed_bernoulli(int[] shape, int threshold, ScalarType dtype, float value=1.) -> Tensor");
}

// A factory: no tensor argument to dispatch on. The masks it makes are on the CPU.
TORCH_LIBRARY_IMPL(rnnkit, CompositeExplicitAutograd, m) { m.impl("hashed_bernoulli", &hashed_bernoulli); }

}  // namespace rnnkit
