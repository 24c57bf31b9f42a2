// The op through which the fused ops' C++ backward reaches the Python replay of double backward
// (autograd.h's replay_backward); its kernel is ops/fused.py's, registered when the library loads.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("replay_backward(str op, Tensor?[] inputs, Tensor?[] others, Tensor?[] grads, int[] flags) -> Tensor[]");
}
