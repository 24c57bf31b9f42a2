// Fused LSTM layer (one direction) for the CPU: forward and hand-written backward through time.
//
// Dimensions: T steps, B batch, I input features, H hidden, P = proj_size or H.
//   x       (T, B, I)   input; W_ih x_t for every step is one product before the loop
//   gates   (T, B, 4H)  saved: activated i, f, g, o of every step (W_ih x_t past a length)
//   h_prev  (T, B, P), c_prev (T, B, H)  saved: the states each step started from
// A step at t >= lengths[b] leaves sequence b's states as they are and outputs zero.
#include <torch/library.h>

#include "../csrc/common.h"

namespace rnnkit {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x_in, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh, const std::optional<Tensor>& w_hr,
    const std::optional<Tensor>& lengths_in, bool reverse) {
  const int64_t H = check_layer("lstm_forward", x_in, h0, w_ih, w_hh, b_ih, b_hh, 4);
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1), P = h0.size(1);
  const bool proj = w_hr.has_value();
  TORCH_CHECK(proj || P == H, "lstm_forward: without w_hr, h0 must have H = ", H, " features, got ", P);
  check_tensor("lstm_forward", "c0", c0, {B, H}, x);
  check_tensor("lstm_forward", "w_hr", w_hr, {P, H}, x);
  const Tensor bias = add_biases(b_ih, b_hh, 4 * H, x.options());
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor gates = project_input(x, w_ih);  // W_ih x_t, then, step by step, the activated gates
  Tensor output = at::zeros({T, B, P}, x.options());
  Tensor h_prev = at::empty({T, B, P}, x.options());
  Tensor c_prev = at::empty({T, B, H}, x.options());
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  Tensor hw = at::empty({B, 4 * H}, x.options());       // W_hh h_{t-1}
  Tensor m = at::zeros({B, H}, x.options());  // o * tanh(c) before the projection; zero for idle rows
  Tensor projected = at::empty({B, P}, x.options());    // W_hr m
  const FixedWeight recurrent(w_hh, B, T);
  const auto projection = proj ? std::optional<FixedWeight>(std::in_place, *w_hr, B, T) : std::nullopt;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    using T_ = scalar_t;
    T_* ph = h.data_ptr<T_>();
    T_* pc = c.data_ptr<T_>();
    T_* pm = m.data_ptr<T_>();
    T_* phw = hw.data_ptr<T_>();
    const T_* pb = bias.data_ptr<T_>();
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = steps.at(i);
      std::copy(ph, ph + B * P, h_prev.data_ptr<T_>() + t * B * P);
      std::copy(pc, pc + B * H, c_prev.data_ptr<T_>() + t * B * H);
      T_* pg = gates.data_ptr<T_>() + t * B * 4 * H;
      T_* po = output.data_ptr<T_>() + t * B * P;
      recurrent.apply(ph, phw);
      for_each_row(B, 4 * H, [&](int64_t b) {
        if (!steps.alive(t, b)) return;
        T_* g = pg + b * 4 * H;
        const T_* r = phw + b * 4 * H;
        T_* cb = pc + b * H;
        T_* out = proj ? pm + b * H : ph + b * P;
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          auto pre = [&](int64_t k) { return L.load(g + k * H + j) + L.load(r + k * H + j) + L.load(pb + k * H + j); };
          const V gi = sigmoid_(pre(0)), gf = sigmoid_(pre(1)), gg = tanh_(pre(2)), go = sigmoid_(pre(3));
          L.store(g + j, gi), L.store(g + H + j, gf), L.store(g + 2 * H + j, gg), L.store(g + 3 * H + j, go);
          const V c_new = gf * L.load(cb + j) + gi * gg;
          L.store(cb + j, c_new);
          L.store(out + j, go * tanh_(c_new));
        });
        if (!proj) std::copy(out, out + P, po + b * P);
      });
      if (proj) {
        T_* pp = projected.data_ptr<T_>();
        projection->apply(pm, pp);
        for (int64_t b = 0; b < B; ++b) {
          if (!steps.alive(t, b)) continue;
          std::copy(pp + b * P, pp + (b + 1) * P, ph + b * P);
          std::copy(pp + b * P, pp + (b + 1) * P, po + b * P);
        }
      }
    }
  });
  return {output, h, c, gates, h_prev, c_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& grad_c_n, const Tensor& x_in,
    const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& w_hr, const std::optional<Tensor>& lengths_in,
    bool reverse, const Tensor& gates, const Tensor& h_prev, const Tensor& c_prev) {
  const Tensor grad_output = grad_output_in.contiguous(), x = x_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / 4, P = h_prev.size(2);
  const bool proj = w_hr.has_value();
  check_tensor("lstm_backward", "grad_output", grad_output, {T, B, P}, gates);
  check_tensor("lstm_backward", "grad_h_n", grad_h_n, {B, P}, gates);
  check_tensor("lstm_backward", "grad_c_n", grad_c_n, {B, H}, gates);
  check_tensor("lstm_backward", "c_prev", c_prev, {T, B, H}, gates);
  check_tensor("lstm_backward", "w_hh", w_hh, {4 * H, P}, gates);
  check_tensor("lstm_backward", "w_ih", w_ih, {4 * H, x.size(2)}, gates);
  check_tensor("lstm_backward", "w_hr", w_hr, {P, H}, gates);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_gates = at::empty({T, B, 4 * H}, gates.options());  // d(pre-activations)
  Tensor dh = grad_h_n.contiguous().clone(), dc = grad_c_n.contiguous().clone();
  Tensor dh_step = at::empty({B, P}, gates.options());  // dh_t: carried dh plus d output_t
  Tensor dm = at::empty({B, H}, gates.options());       // d(o * tanh(c)) before the projection
  Tensor dh_all = proj ? at::zeros({T, B, P}, gates.options()) : Tensor();  // for grad W_hr
  Tensor m_all = proj ? at::zeros({T, B, H}, gates.options()) : Tensor();
  const FixedWeight recurrent(w_hh.t(), B, T);  // dh_{t-1} = dgates W_hh
  const auto projection = proj ? std::optional<FixedWeight>(std::in_place, w_hr->t(), B, T) : std::nullopt;

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward", [&] {
    using T_ = scalar_t;
    T_* pdh = dh.data_ptr<T_>();
    T_* pdc = dc.data_ptr<T_>();
    T_* pds = dh_step.data_ptr<T_>();
    for (int64_t i = T - 1; i >= 0; --i) {
      const int64_t t = steps.at(i);
      const T_* pgo = grad_output.data_ptr<T_>() + t * B * P;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = b * P;
        if (!steps.alive(t, b)) {  // output_t is zero for this sequence: no gradient enters here
          std::copy(pdh + row, pdh + row + P, pds + row);
          continue;
        }
        vectorized<T_>(P, [&](const Lanes<T_>& L, int64_t j) {
          L.store(pds + row + j, L.load(pdh + row + j) + L.load(pgo + row + j));
        });
      }
      const T_* pdm = pds;
      if (proj) {
        T_* pha = dh_all.data_ptr<T_>() + t * B * P;
        for (int64_t b = 0; b < B; ++b) {
          if (steps.alive(t, b)) std::copy(pds + b * P, pds + (b + 1) * P, pha + b * P);
        }
        projection->apply(pds, dm.data_ptr<T_>());
        pdm = dm.data_ptr<T_>();
      }
      const T_* pg = gates.data_ptr<T_>() + t * B * 4 * H;
      const T_* pcp = c_prev.data_ptr<T_>() + t * B * H;
      T_* pgg = grad_gates.data_ptr<T_>() + t * B * 4 * H;
      T_* pma = proj ? m_all.data_ptr<T_>() + t * B * H : nullptr;
      for_each_row(B, 4 * H, [&](int64_t b) {
        T_* dg = pgg + b * 4 * H;
        if (!steps.alive(t, b)) {
          std::fill(dg, dg + 4 * H, T_(0));
          return;
        }
        const T_* g = pg + b * 4 * H;
        const T_* cp = pcp + b * H;
        const T_* dmb = pdm + b * H;
        T_* dcb = pdc + b * H;
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          const V gi = L.load(g + j), gf = L.load(g + H + j), gg = L.load(g + 2 * H + j);
          const V go = L.load(g + 3 * H + j), c_prev = L.load(cp + j), d_m = L.load(dmb + j);
          const V tc = tanh_(gf * c_prev + gi * gg);
          const V dct = L.load(dcb + j) + d_m * go * (V(1) - tc * tc);
          L.store(dg + j, dct * gg * gi * (V(1) - gi));
          L.store(dg + H + j, dct * c_prev * gf * (V(1) - gf));
          L.store(dg + 2 * H + j, dct * gi * (V(1) - gg * gg));
          L.store(dg + 3 * H + j, d_m * tc * go * (V(1) - go));
          L.store(dcb + j, dct * gf);
          if (proj) L.store(pma + b * H + j, go * tc);
        });
      });
      recurrent.apply(pgg, pdh);
      for (int64_t b = 0; b < B; ++b) {
        if (!steps.alive(t, b)) std::copy(pds + b * P, pds + (b + 1) * P, pdh + b * P);
      }
    }
  });

  // Weight gradients: one product over all steps each, after the recurrence.
  auto [grad_x, grad_w_ih] = project_input_backward(grad_gates, x, w_ih);
  Tensor grad_w_hh = weight_gradient(grad_gates, h_prev);
  Tensor grad_w_hr = proj ? weight_gradient(dh_all, m_all) : at::empty({0}, gates.options());
  return {grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_gates.sum({0, 1}), grad_w_hr};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse) -> (Tensor output, Tensor h_n, Tensor c_n, Tensor gates, "
      "Tensor h_prev, Tensor c_prev)");
  m.def(
      "lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor w_ih, Tensor w_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse, Tensor gates, Tensor h_prev, Tensor c_prev) -> (Tensor grad_x, "
      "Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias, Tensor grad_w_hr)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}

}  // namespace rnnkit
