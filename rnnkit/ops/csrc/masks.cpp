// Bernoulli masks from a counter-based hash, every element on its own, the threads splitting them:
// ops/masks.py's rule (its hashed_bits is the specification), bit for bit.
//   k0, k1     two 32-bit words drawn here from torch's CPU generator as ops/masks.py draws its key
//              (torch.randint(0, 2^32, (2,))): the same seed gives the same masks either way
//   threshold  round(p 2^32): element i is ``value`` where mix(mix(i + k0) ^ k1) < threshold, else 0
//              (value 1 / (1 - p) gives dropout's scaled mask in the same pass)
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <torch/library.h>

#include <mutex>

#include "common.h"
#include "masks.h"

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

}  // namespace

at::Tensor hashed_bernoulli(at::IntArrayRef shape, int64_t threshold, at::ScalarType dtype, double value) {
  TORCH_CHECK(0 <= threshold && threshold <= (int64_t(1) << 32),
              "hashed_bernoulli: expected a threshold in [0, 2^32], got ", threshold);
  // The key as torch.randint(0, 2^32, (2,)) draws it: its CPU kernel's distribution on the default
  // generator, two values in order under the generator's lock. Without randint's tensor and
  // TensorIterator, which cost a generated token's mask several times the mask itself.
  auto* generator =
      at::get_generator_or_default<at::CPUGeneratorImpl>(std::nullopt, at::detail::getDefaultCPUGenerator());
  const at::uniform_int_from_to_distribution<int64_t> draw(uint64_t(1) << 32, 0);
  uint32_t k0, k1;
  {
    std::lock_guard<std::mutex> lock(generator->mutex_);
    k0 = static_cast<uint32_t>(draw(generator));
    k1 = static_cast<uint32_t>(draw(generator));
  }
  at::Tensor out = empty_tensor(shape, at::TensorOptions().dtype(dtype));
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

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("hashed_bernoulli(int[] shape, int threshold, ScalarType dtype, float value=1.) -> Tensor");
}

// A factory: no tensor argument to dispatch on. The masks it makes are on the CPU. Its result never
// needs a gradient: the kernel serves the Autograd key too, in place of the boxed fallback there.
TORCH_LIBRARY_IMPL(rnnkit, CompositeExplicitAutograd, m) { m.impl("hashed_bernoulli", &hashed_bernoulli); }
TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) { m.impl("hashed_bernoulli", &hashed_bernoulli); }

}  // namespace rnnkit
