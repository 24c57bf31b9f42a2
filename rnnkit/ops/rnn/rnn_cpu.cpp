// Fused Elman RNN layer (one direction; tanh or ReLU) for the CPU: forward and hand-written backward.
//
// Dimensions: T steps, B batch, I input features, H hidden.
//   x       (T, B, I)  input; W_ih x_t + b for every step is one product before the loop
//   output  (T, B, H)  h_t, zero past each length; saved, since phi'(.) is a function of h_t
//   h_prev  (T, B, H)  saved: the state each step started from
// A step at t >= lengths[b] leaves sequence b's state as it is and outputs zero.
#include <torch/library.h>

#include "../csrc/autograd.h"
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
  const Tensor xw = project_input(x, w_ih, add_biases(b_ih, b_hh, H, x.options()));
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor output = step_results({T, B, H}, xw.options(), lengths);
  Tensor h_prev = empty_tensor({T, B, H}, xw.options());
  Tensor h = copy_of(h0);

  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "rnn_forward", [&] {
    using T_ = scalar_t;
    const T_* px = xw.data_ptr<T_>();
    T_* po = output.data_ptr<T_>();
    forward_loop<T_>(steps, w_hh, 1, h_prev, h, [&](int64_t t, int64_t b, int64_t j0, int64_t n, const T_* w,
                                                    const T_* h_in, T_* h_out) {
      const int64_t row = (t * B + b) * H + j0;
      vectorized<T_>(n, [&](const auto& L, int64_t j) {
        using V = at::vec::Vectorized<T_>;
        const V v = L.load(w + j) + L.load(px + row + j);
        const V y = relu ? at::vec::maximum(v, V(0)) : tanh_(v);
        L.store(h_out + j, y), L.store(po + row + j, y);
      });
    });
  });
  return {output, h, h_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& lengths_in, bool reverse, bool relu, const Tensor& output, const Tensor& h_prev,
    bool input_grad, bool state_grad) {
  const Tensor grad_output = contiguous_of(grad_output_in), x = x_in.contiguous();
  const int64_t T = output.size(0), B = output.size(1), H = output.size(2);
  check_tensor("rnn_backward", "x", x, {T, B, x.size(2)}, output);
  check_tensor("rnn_backward", "grad_output", grad_output, {T, B, H}, output);
  check_state("rnn_backward", "grad_h_n", grad_h_n, B, H, output);
  check_tensor("rnn_backward", "h_prev", h_prev, {T, B, H}, output);
  check_tensor("rnn_backward", "w_hh", w_hh, {H, H}, output);
  check_tensor("rnn_backward", "w_ih", w_ih, {H, x.size(2)}, output);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_pre = empty_tensor({T, B, H}, output.options());  // d(pre-activation) = d xw
  Tensor dh = copy_of(grad_h_n);

  AT_DISPATCH_FLOATING_TYPES(output.scalar_type(), "rnn_backward", [&] {
    using T_ = scalar_t;
    // A part takes its units and W_hh's columns of them: all units for its sequences, or a slice for all.
    const Tiles units(B, H, B * H, PackedWeight<T_>::kWidth, Tiles::by_rows(B, w_hh.numel() * sizeof(T_)));
    const auto recurrent = column_parts<T_>(w_hh, units, T * B);
    Tensor products = scratch_for<T_>(units.parts(), B, {&recurrent}, output.options());
    T_* pdh = dh.data_ptr<T_>();
    auto carry = [&](int64_t p, int64_t t) {  // dh[:, part p] = dpre_t W_hh[:, part p]
      carry_back(recurrent, units, p, steps, t, grad_pre.data_ptr<T_>() + t * B * H, H, products, pdh, H);
    };
    Team::run(units.parts(), [&](const Team::Member& member) {
      for (int64_t i = T - 1; i >= 0; --i) {
        const int64_t t = steps.at(i);
        const T_* pgo = grad_output.data_ptr<T_>() + t * B * H;
        const T_* py = output.data_ptr<T_>() + t * B * H;
        T_* pd = grad_pre.data_ptr<T_>() + t * B * H;
        member.each(units, [&](int64_t p) {
          if (i + 1 < T) carry(p, steps.at(i + 1));
          const int64_t j0 = units.begin(p), n = units.end(p) - j0;
          for (int64_t b = units.row_begin(p); b < units.row_end(p); ++b) {
            const int64_t row = b * H + j0;
            if (!steps.alive(t, b)) {
              std::fill(pd + row, pd + row + n, T_(0));
              continue;
            }
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              using V = at::vec::Vectorized<T_>;
              const V y = L.load(py + row + j);
              const V slope = relu ? y.gt(V(0)) : V(1) - y * y;  // gt gives 1 or 0 per lane
              L.store(pd + row + j, (L.load(pdh + row + j) + L.load(pgo + row + j)) * slope);
            });
          }
        });
      }
      if (T > 0 && state_grad) member.each(units, [&](int64_t p) { carry(p, steps.at(0)); });
    });
  });

  const auto grads = step_weight_gradients(grad_pre, {x, h_prev}, true);  // W_ih, W_hh, bias
  return {input_gradient(grad_pre, w_ih, input_grad), state_gradient(dh, state_grad), grads[0], grads[1], grads[2]};
}

struct RnnFunction : public torch::autograd::Function<RnnFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                               const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh, const std::optional<Tensor>& lengths, bool reverse,
                               bool relu) {
    static const auto op = typed_op<decltype(rnn_forward)>("rnnkit::rnn_forward");
    auto [output, h_n, h_prev] = call_below_autograd(op, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu);
    ctx->set_materialize_grads(false);  // no zero tensors for the outputs the backward ignores
    ctx->mark_non_differentiable({h_prev});
    ctx->save_for_backward({x, h0, w_ih, w_hh, or_undefined(b_ih), or_undefined(b_hh), or_undefined(lengths), output,
                            h_prev});
    ctx->saved_data["flags"] = std::vector<int64_t>{reverse, relu};
    return {output, h_n, h_prev};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &w_ih = saved[2], &w_hh = saved[3], &lengths = saved[6];
    const Tensor &output = saved[7], &h_prev = saved[8];
    const auto flags = ctx->saved_data["flags"].toIntVector();
    variable_list inputs(saved.begin(), saved.begin() + 6);
    if (at::GradMode::is_enabled()) {
      inputs = replay_backward("rnn_forward", inputs, {lengths}, {grads[0], grads[1]}, flags);
    } else {
      static const auto op = typed_op<decltype(rnn_backward)>("rnnkit::rnn_backward");
      const bool input_grad = ctx->needs_input_grad(0), state_grad = ctx->needs_input_grad(1);
      auto [g_x, g_h0, g_w_ih, g_w_hh, g_b] =
          call_below_autograd(op, or_zeros(grads[0], output), or_zeros(grads[1], h0), x, w_ih, w_hh,
                              optional(lengths), bool(flags[0]), bool(flags[1]), output, h_prev, input_grad,
                              state_grad);
      auto [g_b_ih, g_b_hh] = bias_gradients(g_b, inputs[4], inputs[5]);
      inputs = {input_grad ? g_x : Tensor(), state_grad ? g_h0 : Tensor(), g_w_ih, g_w_hh, g_b_ih, g_b_hh};
    }
    inputs.resize(9);  // lengths, reverse, relu
    return inputs;
  }
};

std::tuple<Tensor, Tensor, Tensor> rnn_forward_autograd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                        const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                                                        const std::optional<Tensor>& b_hh,
                                                        const std::optional<Tensor>& lengths, bool reverse, bool relu) {
  auto out = RnnFunction::apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "rnn_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "bool reverse, bool relu) -> (Tensor output, Tensor h_n, Tensor h_prev)");
  m.def(
      "rnn_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
      "bool reverse, bool relu, Tensor output, Tensor h_prev, bool input_grad, bool state_grad) -> (Tensor grad_x, "
      "Tensor grad_h0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) { m.impl("rnn_forward", &rnn_forward_autograd); }

}  // namespace rnnkit
