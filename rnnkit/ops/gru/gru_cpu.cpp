// Fused GRU layer (one direction) for the CPU: forward and hand-written backward through time.
//
// Dimensions: T steps, B batch, I input features, H hidden.
//   x       (T, B, I)   input; W_ih x_t for every step is one product before the loop
//   gates   (T, B, 3H)  saved: activated r, z, n of every step (W_ih x_t past a length)
//   hn      (T, B, H)   saved: W_hn h_{t-1} + b_hn, which r scales
//   h_prev  (T, B, H)   saved: the state each step started from
// A step at t >= lengths[b] leaves sequence b's state as it is and outputs zero.
#include <torch/library.h>

#include "../csrc/common.h"

namespace rnnkit {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(const Tensor& x_in, const Tensor& h0,
                                                               const Tensor& w_ih, const Tensor& w_hh,
                                                               const std::optional<Tensor>& b_ih,
                                                               const std::optional<Tensor>& b_hh,
                                                               const std::optional<Tensor>& lengths_in, bool reverse) {
  const int64_t H = check_layer("gru_forward", x_in, h0, w_ih, w_hh, b_ih, b_hh, 3);
  TORCH_CHECK(w_hh.size(1) == H, "gru_forward: expected w_hh of shape (3*H, H), got ", w_hh.sizes());
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1);
  // b_hn must stay apart from b_in: r scales it (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).
  const Tensor bias_i = add_biases(b_ih, std::nullopt, 3 * H, x.options());
  const Tensor bias_h = add_biases(b_hh, std::nullopt, 3 * H, x.options());
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor gates = project_input(x, w_ih);  // W_ih x_t, then, step by step, the activated gates
  Tensor output = at::zeros({T, B, H}, x.options());
  Tensor hn = at::empty({T, B, H}, x.options());
  Tensor h_prev = at::empty({T, B, H}, x.options());
  Tensor h = h0.contiguous().clone();
  Tensor hw = at::empty({B, 3 * H}, x.options());  // W_hh h_{t-1}
  const FixedWeight recurrent(w_hh, B, T);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    T_* ph = h.data_ptr<T_>();
    T_* phw = hw.data_ptr<T_>();
    const T_* pbi = bias_i.data_ptr<T_>();
    const T_* pbh = bias_h.data_ptr<T_>();
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = steps.at(i);
      std::copy(ph, ph + B * H, h_prev.data_ptr<T_>() + t * B * H);
      T_* pg = gates.data_ptr<T_>() + t * B * 3 * H;
      T_* pn = hn.data_ptr<T_>() + t * B * H;
      T_* po = output.data_ptr<T_>() + t * B * H;
      recurrent.apply(ph, phw);
      for_each_row(B, 3 * H, [&](int64_t b) {
        if (!steps.alive(t, b)) return;
        T_* g = pg + b * 3 * H;
        const T_* w = phw + b * 3 * H;
        T_* hb = ph + b * H;
        T_* hn_b = pn + b * H;
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          auto from_x = [&](int64_t k) { return L.load(g + k * H + j) + L.load(pbi + k * H + j); };
          auto from_h = [&](int64_t k) { return L.load(w + k * H + j) + L.load(pbh + k * H + j); };
          const V r = sigmoid_(from_x(0) + from_h(0));
          const V z = sigmoid_(from_x(1) + from_h(1));
          const V h_n = from_h(2);
          const V n = tanh_(from_x(2) + r * h_n);
          L.store(g + j, r), L.store(g + H + j, z), L.store(g + 2 * H + j, n);
          L.store(hn_b + j, h_n);
          L.store(hb + j, (V(1) - z) * n + z * L.load(hb + j));
        });
        std::copy(hb, hb + H, po + b * H);
      });
    }
  });
  return {output, h, gates, hn, h_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& lengths_in, bool reverse, const Tensor& gates, const Tensor& hn,
    const Tensor& h_prev) {
  const Tensor grad_output = grad_output_in.contiguous(), x = x_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / 3;
  check_tensor("gru_backward", "grad_output", grad_output, {T, B, H}, gates);
  check_tensor("gru_backward", "grad_h_n", grad_h_n, {B, H}, gates);
  check_tensor("gru_backward", "hn", hn, {T, B, H}, gates);
  check_tensor("gru_backward", "h_prev", h_prev, {T, B, H}, gates);
  check_tensor("gru_backward", "w_hh", w_hh, {3 * H, H}, gates);
  check_tensor("gru_backward", "w_ih", w_ih, {3 * H, x.size(2)}, gates);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_xw = at::empty({T, B, 3 * H}, gates.options());  // d(W_ih x + b_ih)
  Tensor grad_hw = at::empty({T, B, 3 * H}, gates.options());  // d(W_hh h + b_hh): differs in the n block
  Tensor dh = grad_h_n.contiguous().clone();
  Tensor carry = at::empty({B, H}, gates.options());  // the part of dh_{t-1} that skips W_hh: z * dh_t

  const FixedWeight recurrent(w_hh.t(), B, T);  // dh_{t-1} = d(W_hh h) W_hh + carry
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    T_* pdh = dh.data_ptr<T_>();
    T_* pcarry = carry.data_ptr<T_>();
    for (int64_t i = T - 1; i >= 0; --i) {
      const int64_t t = steps.at(i);
      const T_* pgo = grad_output.data_ptr<T_>() + t * B * H;
      const T_* pg = gates.data_ptr<T_>() + t * B * 3 * H;
      const T_* pn = hn.data_ptr<T_>() + t * B * H;
      const T_* php = h_prev.data_ptr<T_>() + t * B * H;
      T_* pdx = grad_xw.data_ptr<T_>() + t * B * 3 * H;
      T_* pdw = grad_hw.data_ptr<T_>() + t * B * 3 * H;
      for_each_row(B, 3 * H, [&](int64_t b) {
        T_* dx = pdx + b * 3 * H;
        T_* dw = pdw + b * 3 * H;
        if (!steps.alive(t, b)) {
          std::fill(dx, dx + 3 * H, T_(0));
          std::fill(dw, dw + 3 * H, T_(0));
          std::copy(pdh + b * H, pdh + (b + 1) * H, pcarry + b * H);
          return;
        }
        const T_* g = pg + b * 3 * H;
        const T_* hn_b = pn + b * H;
        const T_* hp_b = php + b * H;
        const T_* dh_b = pdh + b * H;
        const T_* go_b = pgo + b * H;
        T_* carry_b = pcarry + b * H;
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          const V r = L.load(g + j), z = L.load(g + H + j), n = L.load(g + 2 * H + j);
          const V d = L.load(dh_b + j) + L.load(go_b + j);
          const V dn = d * (V(1) - z) * (V(1) - n * n);
          const V dr = dn * L.load(hn_b + j) * r * (V(1) - r);
          const V dz = d * (L.load(hp_b + j) - n) * z * (V(1) - z);
          L.store(dx + j, dr), L.store(dx + H + j, dz), L.store(dx + 2 * H + j, dn);
          L.store(dw + j, dr), L.store(dw + H + j, dz), L.store(dw + 2 * H + j, dn * r);
          L.store(carry_b + j, d * z);
        });
      });
      recurrent.apply(pdw, pdh);
      for (int64_t k = 0; k < B * H; ++k) pdh[k] += pcarry[k];
    }
  });

  auto [grad_x, grad_w_ih] = project_input_backward(grad_xw, x, w_ih);
  Tensor grad_w_hh = weight_gradient(grad_hw, h_prev);
  return {grad_x, dh, grad_w_ih, grad_w_hh, grad_xw.sum({0, 1}), grad_hw.sum({0, 1})};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "bool reverse) -> (Tensor output, Tensor h_n, Tensor gates, Tensor hn, Tensor h_prev)");
  m.def(
      "gru_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
      "bool reverse, Tensor gates, Tensor hn, Tensor h_prev) -> (Tensor grad_x, Tensor grad_h0, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}

}  // namespace rnnkit
