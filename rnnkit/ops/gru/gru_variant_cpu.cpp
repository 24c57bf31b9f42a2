// Fused GRU layer (one direction) with the variants of ops/variant.py for the CPU: layer norm of
// W_hh (m h_{t-1}), recurrent dropout's mask m and zoneout, forward and hand-written backward
// (the loop is csrc/variant.h's), from the input projection a_t = LN(W_ih x_t) + b_ih of every step
// (variant_input):
//   u = LN(W_hh (m h_{t-1}); gamma_hh) + b_hh
//   r = sigma(a_r + u_r)   z = sigma(a_z + u_z)   n = tanh(a_n + r u_n)   h~ = n + z (h_{t-1} - n)
#include <torch/library.h>

#include "../csrc/variant.h"

namespace rnnkit {
namespace {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;

struct GruCell {
  static constexpr int64_t kGates = 3;
  static constexpr bool kOfTheSum = false;
  static constexpr bool kSavesProduct = true;  // u_n, which r scales
  static constexpr int64_t kSummedBiasGates = 2;  // r and z; not n, whose b_hn r scales

  template <typename L, typename T>
  static at::vec::Vectorized<T> forward(const L& lanes, int64_t j, int64_t H, int64_t n, const T* a, const T* u,
                                        const T* u_bias, const at::vec::Vectorized<T>& h_old, T* g, T* u_n) {
    using V = at::vec::Vectorized<T>;
    const V r = sigmoid_(lanes.load(a + j) + lanes.load(u + j));
    const V z = sigmoid_(lanes.load(a + H + j) + lanes.load(u + n + j));
    const V hn = u_bias ? lanes.load(u + 2 * n + j) + lanes.load(u_bias + 2 * H + j) : lanes.load(u + 2 * n + j);
    const V gn = tanh_(lanes.load(a + 2 * H + j) + r * hn);
    lanes.store(g + j, r), lanes.store(g + H + j, z), lanes.store(g + 2 * H + j, gn), lanes.store(u_n + j, hn);
    return gn + z * (h_old - gn);
  }

  template <typename L, typename T>
  static void backward(const L& lanes, int64_t j, int64_t H, const at::vec::Vectorized<T>& d, const T* g, const T* u_n,
                       const at::vec::Vectorized<T>& h_old, T* d_a, T* d_u, T* skip) {
    using V = at::vec::Vectorized<T>;
    const V r = lanes.load(g + j), z = lanes.load(g + H + j), gn = lanes.load(g + 2 * H + j);
    const V dn = d * (V(1) - z) * (V(1) - gn * gn);
    const V dr = dn * lanes.load(u_n + j) * r * (V(1) - r);
    const V dz = d * (h_old - gn) * z * (V(1) - z);
    lanes.store(d_a + j, dr), lanes.store(d_a + H + j, dz), lanes.store(d_a + 2 * H + j, dn);
    lanes.store(d_u + j, dr), lanes.store(d_u + H + j, dz), lanes.store(d_u + 2 * H + j, dn * r);
    lanes.store(skip + j, d * z);
  }
};

SingleStateForward gru_variant_forward(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                                       const OptionalTensor& ln_ih_weight, const Tensor& h0, const Tensor& w_hh,
                                       const OptionalTensor& b_hh, const OptionalTensor& ln_hh_weight,
                                       const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
                                       const OptionalTensor& lengths, bool reverse, bool save) {
  return single_state_variant_forward<GruCell>("gru_variant_forward", x, w_ih, b_ih, ln_ih_weight, h0, w_hh, b_hh,
                                               ln_hh_weight, dropout_mask, keep_h, lengths, reverse, save);
}

std::vector<Tensor> gru_variant_backward(const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& x,
                                         const Tensor& w_ih, bool bias_grad, bool input_grad, bool state_grad,
                                         const OptionalTensor& ln_ih_weight, const Tensor& w_hh,
                                         const OptionalTensor& b_hh, const OptionalTensor& ln_hh_weight,
                                         const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
                                         const OptionalTensor& lengths, bool reverse, const Tensor& hm,
                                         const Tensor& gates, const Tensor& h_prev, const Tensor& u_n,
                                         const Tensor& v_hat, const Tensor& rstd, const Tensor& a_hat,
                                         const Tensor& rstd_ih) {
  return single_state_variant_backward<GruCell>("gru_variant_backward", grad_output, grad_h_n, x, w_ih, bias_grad,
                                                input_grad, state_grad, ln_ih_weight, w_hh, b_hh, ln_hh_weight,
                                                dropout_mask, keep_h, lengths, reverse, hm, gates, h_prev, u_n, v_hat,
                                                rstd, a_hat, rstd_ih);
}

struct GruVariantOps {
  static constexpr const char* kName = "gru_variant_forward";
  static constexpr const char* kForward = "rnnkit::gru_variant_forward";
  static constexpr const char* kBackward = "rnnkit::gru_variant_backward";
};

using GruVariantFunction = SingleStateVariantFunction<GruVariantOps>;

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "gru_variant_forward(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? ln_ih_weight, Tensor h0, Tensor w_hh, "
      "Tensor? b_hh, Tensor? ln_hh_weight, Tensor? dropout_mask, Tensor? keep_h, Tensor? lengths, bool reverse, "
      "bool save=True) -> (Tensor output, Tensor h_n, Tensor hm, Tensor gates, Tensor h_prev, Tensor u_n, "
      "Tensor v_hat, Tensor rstd, Tensor a_hat, Tensor rstd_ih)");
  m.def(
      "gru_variant_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, bool bias_grad, "
      "bool input_grad, bool state_grad, Tensor? ln_ih_weight, Tensor w_hh, Tensor? b_hh, Tensor? ln_hh_weight, "
      "Tensor? dropout_mask, Tensor? keep_h, Tensor? lengths, bool reverse, Tensor hm, Tensor gates, "
      "Tensor h_prev, Tensor u_n, Tensor v_hat, Tensor rstd, Tensor a_hat, Tensor rstd_ih) -> Tensor[]");
  m.def(
      "gru_variant_drawn(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? ln_ih_weight, Tensor h0, Tensor w_hh, "
      "Tensor? b_hh, Tensor? ln_hh_weight, float dropout, float zoneout_h, float zoneout_c, bool training, "
      "Tensor? lengths, bool reverse, bool save=True) -> (Tensor output, Tensor h_n)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("gru_variant_forward", &gru_variant_forward);
  m.impl("gru_variant_backward", &gru_variant_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) {
  m.impl("gru_variant_forward", &GruVariantFunction::apply_op);
}

TORCH_LIBRARY_IMPL(rnnkit, CompositeImplicitAutograd, m) { m.impl("gru_variant_drawn", &GruVariantFunction::drawn); }

}  // namespace rnnkit
