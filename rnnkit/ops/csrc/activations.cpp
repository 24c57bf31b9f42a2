// What the tests check of a build of the kernels: its elementwise math (activations.h) on any
// tensor, and the instruction-set path it was compiled for.
#include <torch/library.h>

#include <string>

#include "common.h"

namespace rnnkit {
namespace {

// x (any shape) -> (sigmoid(x), tanh(x)), as the cells compute them.
std::tuple<at::Tensor, at::Tensor> activations(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.device().is_cpu(), "activations: expected a CPU tensor, got one on ", x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor sigmoid = empty_tensor(x.sizes(), x.options()), tanh = empty_tensor(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "activations", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* s = sigmoid.data_ptr<scalar_t>();
    scalar_t* t = tanh.data_ptr<scalar_t>();
    vectorized<scalar_t>(x.numel(), [&](const auto& L, int64_t j) {
      const auto v = L.load(in + j);
      L.store(s + j, sigmoid_<scalar_t>(v));
      L.store(t + j, tanh_<scalar_t>(v));
    });
  });
  return {sigmoid, tanh};
}

// The at::vec implementation compiled in, as rnnkit.ops.compiled names the paths.
std::string vector_isa() {
#if defined(CPU_CAPABILITY_AVX512)
  return "avx512";
#elif defined(CPU_CAPABILITY_AVX2)
  return "avx2";
#else
  return "default";
#endif
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("activations(Tensor x) -> (Tensor sigmoid, Tensor tanh)");
  m.def("vector_isa() -> str", &vector_isa);
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) { m.impl("activations", &activations); }

}  // namespace rnnkit
