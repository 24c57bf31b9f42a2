// Fused Elman RNN layer (one direction; tanh or ReLU) with the variants of ops/variant.py for the
// CPU: layer norm of W_hh (m h_{t-1}), recurrent dropout's mask m and zoneout, forward and
// hand-written backward (the loop is csrc/variant.h's), from the input projection a_t = LN(W_ih x_t)
// + b_ih of every step (variant_input):
//   h~ = phi(a_t + LN(W_hh (m h_{t-1}); gamma_hh) + b_hh).
#include <torch/library.h>

#include "../csrc/variant.h"

namespace rnnkit {
namespace {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;

template <bool Relu>
struct ElmanCell {
  static constexpr int64_t kGates = 1;
  static constexpr bool kOfTheSum = true;
  static constexpr bool kSavesProduct = false;
  static constexpr int64_t kSummedBiasGates = 1;

  template <typename L, typename T>
  static at::vec::Vectorized<T> forward(const L& lanes, int64_t j, int64_t, int64_t, const T* a, const T* u,
                                        const T*, const at::vec::Vectorized<T>&, T* g, T*) {  // b_hh: all in a
    using V = at::vec::Vectorized<T>;
    const V v = lanes.load(a + j) + lanes.load(u + j);
    const V y = Relu ? at::vec::maximum(v, V(0)) : tanh_(v);
    lanes.store(g + j, y);
    return y;
  }

  // No skip: h_{t-1} reaches h~ through W_hh only (kOfTheSum: there is no skip buffer).
  template <typename L, typename T>
  static void backward(const L& lanes, int64_t j, int64_t, const at::vec::Vectorized<T>& d, const T* g, const T*,
                       const at::vec::Vectorized<T>&, T* d_a, T* d_u, T*) {
    using V = at::vec::Vectorized<T>;
    const V y = lanes.load(g + j);
    const V slope = Relu ? y.gt(V(0)) : V(1) - y * y;  // gt gives 1 or 0 per lane
    lanes.store(d_a + j, d * slope);
    if (d_u != d_a) lanes.store(d_u + j, d * slope);  // one buffer where one product gives both weights' gradients
  }
};

SingleStateForward rnn_variant_forward(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                                       const OptionalTensor& ln_ih_weight, const Tensor& h0, const Tensor& w_hh,
                                       const OptionalTensor& b_hh, const OptionalTensor& ln_hh_weight,
                                       const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
                                       const OptionalTensor& lengths, bool reverse, bool relu, bool save) {
  const char* op = "rnn_variant_forward";
  auto forward = relu ? single_state_variant_forward<ElmanCell<true>> : single_state_variant_forward<ElmanCell<false>>;
  return forward(op, x, w_ih, b_ih, ln_ih_weight, h0, w_hh, b_hh, ln_hh_weight, dropout_mask, keep_h, lengths, reverse,
                 save);
}

std::vector<Tensor> rnn_variant_backward(const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& x,
                                         const Tensor& w_ih, bool bias_grad, bool input_grad, bool state_grad,
                                         const OptionalTensor& ln_ih_weight, const Tensor& w_hh,
                                         const OptionalTensor& b_hh, const OptionalTensor& ln_hh_weight,
                                         const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
                                         const OptionalTensor& lengths, bool reverse, bool relu, const Tensor& hm,
                                         const Tensor& gates, const Tensor& h_prev, const Tensor& u_n,
                                         const Tensor& v_hat, const Tensor& rstd, const Tensor& a_hat,
                                         const Tensor& rstd_ih) {
  const char* op = "rnn_variant_backward";
  auto backward =
      relu ? single_state_variant_backward<ElmanCell<true>> : single_state_variant_backward<ElmanCell<false>>;
  return backward(op, grad_output, grad_h_n, x, w_ih, bias_grad, input_grad, state_grad, ln_ih_weight, w_hh, b_hh,
                  ln_hh_weight, dropout_mask, keep_h, lengths, reverse, hm, gates, h_prev, u_n, v_hat, rstd, a_hat,
                  rstd_ih);
}

struct RnnVariantOps {
  static constexpr const char* kName = "rnn_variant_forward";
  static constexpr const char* kForward = "rnnkit::rnn_variant_forward";
  static constexpr const char* kBackward = "rnnkit::rnn_variant_backward";
};

using RnnVariantFunction = SingleStateVariantFunction<RnnVariantOps, bool>;

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "rnn_variant_forward(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? ln_ih_weight, Tensor h0, Tensor w_hh, "
      "Tensor? b_hh, Tensor? ln_hh_weight, Tensor? dropout_mask, Tensor? keep_h, Tensor? lengths, bool reverse, "
      "bool relu, bool save=True) -> (Tensor output, Tensor h_n, Tensor hm, Tensor gates, Tensor h_prev, "
      "Tensor u_n, Tensor v_hat, Tensor rstd, Tensor a_hat, Tensor rstd_ih)");
  m.def(
      "rnn_variant_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, bool bias_grad, "
      "bool input_grad, bool state_grad, Tensor? ln_ih_weight, Tensor w_hh, Tensor? b_hh, Tensor? ln_hh_weight, "
      "Tensor? dropout_mask, Tensor? keep_h, Tensor? lengths, bool reverse, bool relu, Tensor hm, Tensor gates, "
      "Tensor h_prev, Tensor u_n, Tensor v_hat, Tensor rstd, Tensor a_hat, Tensor rstd_ih) -> Tensor[]");
  m.def(
      "rnn_variant_drawn(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? ln_ih_weight, Tensor h0, Tensor w_hh, "
      "Tensor? b_hh, Tensor? ln_hh_weight, float dropout, float zoneout_h, float zoneout_c, bool training, "
      "Tensor? lengths, bool reverse, bool relu, bool save=True) -> (Tensor output, Tensor h_n)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("rnn_variant_forward", &rnn_variant_forward);
  m.impl("rnn_variant_backward", &rnn_variant_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) {
  m.impl("rnn_variant_forward", &RnnVariantFunction::apply_op);
}

TORCH_LIBRARY_IMPL(rnnkit, CompositeImplicitAutograd, m) { m.impl("rnn_variant_drawn", &RnnVariantFunction::drawn); }

}  // namespace rnnkit
