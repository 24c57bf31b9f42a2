// Fused Elman RNN layer (one direction; tanh or ReLU) for the CPU: forward and hand-written backward.
//
// Dimensions: T steps, B batch, I input features, H hidden.
//   x       (T, B, I)  input; W_ih x_t for every step is one product before the loop
//   output  (T, B, H)  h_t, zero past each length; saved, since phi'(.) is a function of h_t
//   h_prev  (T, B, H)  saved: the state each step started from
// A step at t >= lengths[b] leaves sequence b's state as it is and outputs zero.
#include <torch/library.h>

#include "../csrc/common.h"

namespace rnnkit {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& x_in, const Tensor& h0, const Tensor& w_ih,
                                               const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                                               const std::optional<Tensor>& b_hh,
                                               const std::optional<Tensor>& lengths_in, bool reverse, bool relu) {
  const int64_t H = check_layer("rnn_forward", x_in, h0, w_ih, w_hh, b_ih, b_hh, 1);
  TORCH_CHECK(w_hh.size(1) == H, "rnn_forward: expected w_hh of shape (H, H), got ", w_hh.sizes());
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1);
  const Tensor bias = add_biases(b_ih, b_hh, H, x.options());
  const Tensor xw = project_input(x, w_ih);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor output = at::zeros({T, B, H}, xw.options());
  Tensor h_prev = at::empty({T, B, H}, xw.options());
  Tensor h = h0.contiguous().clone();
  Tensor pre = at::empty({B, H}, xw.options());

  const FixedWeight recurrent(w_hh, B, T);
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "rnn_forward", [&] {
    using T_ = scalar_t;
    T_* ph = h.data_ptr<T_>();
    T_* pp = pre.data_ptr<T_>();
    const T_* pb = bias.data_ptr<T_>();
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = steps.at(i);
      std::copy(ph, ph + B * H, h_prev.data_ptr<T_>() + t * B * H);
      const T_* px = xw.data_ptr<T_>() + t * B * H;
      T_* po = output.data_ptr<T_>() + t * B * H;
      recurrent.apply(ph, pp);
      for_each_row(B, H, [&](int64_t b) {
        if (!steps.alive(t, b)) return;
        const int64_t row = b * H;
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          const V v = L.load(pp + row + j) + L.load(px + row + j) + L.load(pb + j);
          const V y = relu ? at::vec::maximum(v, V(0)) : tanh_(v);
          L.store(ph + row + j, y), L.store(po + row + j, y);
        });
      });
    }
  });
  return {output, h, h_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& lengths_in, bool reverse, bool relu, const Tensor& output, const Tensor& h_prev) {
  const Tensor grad_output = grad_output_in.contiguous(), x = x_in.contiguous();
  const int64_t T = output.size(0), B = output.size(1), H = output.size(2);
  check_tensor("rnn_backward", "grad_output", grad_output, {T, B, H}, output);
  check_tensor("rnn_backward", "grad_h_n", grad_h_n, {B, H}, output);
  check_tensor("rnn_backward", "h_prev", h_prev, {T, B, H}, output);
  check_tensor("rnn_backward", "w_hh", w_hh, {H, H}, output);
  check_tensor("rnn_backward", "w_ih", w_ih, {H, x.size(2)}, output);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_pre = at::empty({T, B, H}, output.options());  // d(pre-activation) = d xw
  Tensor dh = grad_h_n.contiguous().clone();
  Tensor carry = at::empty({B, H}, output.options());  // dh of sequences that skip step t

  const FixedWeight recurrent(w_hh.t(), B, T);  // dh_{t-1} = dpre W_hh + carry
  AT_DISPATCH_FLOATING_TYPES(output.scalar_type(), "rnn_backward", [&] {
    using T_ = scalar_t;
    T_* pdh = dh.data_ptr<T_>();
    T_* pcarry = carry.data_ptr<T_>();
    for (int64_t i = T - 1; i >= 0; --i) {
      const int64_t t = steps.at(i);
      const T_* pgo = grad_output.data_ptr<T_>() + t * B * H;
      const T_* py = output.data_ptr<T_>() + t * B * H;
      T_* pd = grad_pre.data_ptr<T_>() + t * B * H;
      for_each_row(B, H, [&](int64_t b) {
        const int64_t row = b * H;
        if (!steps.alive(t, b)) {
          std::fill(pd + row, pd + row + H, T_(0));
          std::copy(pdh + row, pdh + row + H, pcarry + row);
          return;
        }
        std::fill(pcarry + row, pcarry + row + H, T_(0));
        vectorized<T_>(H, [&](const Lanes<T_>& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          const V y = L.load(py + row + j);
          const V slope = relu ? y.gt(V(0)) : V(1) - y * y;  // gt gives 1 or 0 per lane
          L.store(pd + row + j, (L.load(pdh + row + j) + L.load(pgo + row + j)) * slope);
        });
      });
      recurrent.apply(pd, pdh);
      for (int64_t k = 0; k < B * H; ++k) pdh[k] += pcarry[k];
    }
  });

  auto [grad_x, grad_w_ih] = project_input_backward(grad_pre, x, w_ih);
  Tensor grad_w_hh = weight_gradient(grad_pre, h_prev);
  return {grad_x, dh, grad_w_ih, grad_w_hh, grad_pre.sum({0, 1})};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "rnn_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "bool reverse, bool relu) -> (Tensor output, Tensor h_n, Tensor h_prev)");
  m.def(
      "rnn_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
      "bool reverse, bool relu, Tensor output, Tensor h_prev) -> (Tensor grad_x, Tensor grad_h0, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_bias)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace rnnkit
