// The autograd formulas of the fused ops, as torch::autograd::Functions registered for the ops'
// Autograd dispatch key: eager calls, torch.compile and torch.export all go through them.
//
// A Python autograd.Function costs a generated token (one step of one sequence) about a tenth of
// its time: its apply, the context's Python attributes and a backward in Python. Here the forward
// saves what the backward kernel reads and the backward calls it, both below the Autograd key.
// The outputs that only carry what the backward reads (gates, every step's states...) are marked
// non-differentiable: autograd keeps no gradient edge or metadata of them.
// Double backward (create_graph=True) replays the naive ops under autograd instead: the kernels'
// backward has no backward of its own. That replay is Python (ops/fused.py), reached through the
// op rnnkit::replay_backward.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>
#include <string>
#include <vector>

namespace rnnkit {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The typed handle of the rnnkit op ``name`` ("rnnkit::<op>") whose C++ signature is ``Signature``.
template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// ``op(args...)`` past the Autograd key: the kernel of the tensors' device (or fake tensors' formula).
template <typename Signature, typename... Args>
auto call_below_autograd(const c10::TypedOperatorHandle<Signature>& op, Args&&... args) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(std::forward<Args>(args)...);
}

// An upstream gradient, or zeros shaped like the output it is of where autograd passes none.
inline at::Tensor or_zeros(const at::Tensor& grad, const at::Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like, at::MemoryFormat::Contiguous);
}

// An optional argument as a tensor to save (undefined where absent), and back.
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }
inline std::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Double backward of the forward op ``op`` ("lstm_forward", ...): gradients of ``inputs`` (its
// differentiable inputs as saved; undefined where absent) against ``grads``, recorded so that they
// can be differentiated again. ``others`` (lengths, masks) and ``flags`` are the rest of its arguments.
// Returns one gradient per input, undefined where the input is absent or needs none.
inline variable_list replay_backward(const std::string& op, const variable_list& inputs, const variable_list& others,
                                     const variable_list& grads, const std::vector<int64_t>& flags) {
  static const c10::OperatorHandle handle =
      c10::Dispatcher::singleton().findSchemaOrThrow("rnnkit::replay_backward", "");
  auto optionals = [](const variable_list& tensors) {
    c10::List<std::optional<at::Tensor>> list;
    for (const auto& t : tensors) list.push_back(optional(t));
    return list;
  };
  torch::jit::Stack stack{op, optionals(inputs), optionals(others), optionals(grads), flags};
  handle.callBoxed(&stack);
  const std::vector<at::Tensor> found = stack.at(0).toTensorVector();
  variable_list result(inputs.size());
  size_t k = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].requires_grad()) result[i] = found.at(k++);
  }
  return result;
}

// Whether autograd wants the gradient of ``inputs[i]``, of the op's leading arguments (undefined
// where an optional one was absent): ctx->needs_input_grad counts the tensors given, so an absent
// argument moves the later ones' indices.
inline bool wants_gradient(AutogradContext* ctx, const variable_list& inputs, size_t i) {
  if (!inputs[i].defined()) return false;
  size_t given = 0;
  for (size_t k = 0; k < i; ++k) given += inputs[k].defined();
  return ctx->needs_input_grad(given);
}

// The gradients ``found`` of ``inputs`` (as wants_gradient's) where autograd wants them, else undefined.
inline variable_list wanted_gradients(AutogradContext* ctx, const variable_list& inputs,
                                      const std::vector<at::Tensor>& found) {
  variable_list result(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (wants_gradient(ctx, inputs, i)) result[i] = found.at(i);
  }
  return result;
}

// The gradients of b_ih and b_hh, which are both ``grad`` where the bias is present. The second is
// a copy: autograd may keep a returned gradient as the parameter's .grad, and two parameters
// sharing one would be accumulated and clipped twice.
inline std::pair<at::Tensor, at::Tensor> bias_gradients(const at::Tensor& grad, const at::Tensor& b_ih,
                                                        const at::Tensor& b_hh) {
  return {b_ih.defined() ? grad : at::Tensor(), b_hh.defined() ? grad.clone() : at::Tensor()};
}

}  // namespace rnnkit
