// Memory kept by a thread from one call of a kernel to the next.
//
// A buffer that a call frees goes back to the system and comes again as fresh pages, whose first
// touch costs more than the work on small sizes: the buffers a kernel keeps to itself are kept
// here instead, per thread, and handed out again while nothing else holds them.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <cstdint>
#include <vector>

namespace rnnkit {

// Room for ``n`` values of the calling thread's own, kept for its next call.
template <typename T>
T* thread_scratch(int64_t n) {
  thread_local std::vector<T> room;
  if (static_cast<int64_t>(room.size()) < n) room.resize(n);
  return room.data();
}

// The buffers a kernel keeps to itself, one slot each: a thread's buffer of a slot is kept for its
// next call and handed out again while nothing else holds it (fresh pages cost a layer-normalised
// LSTM's backward at H = 10 a tenth of its time). A slot keeps at most kWorkspaceBytes.
enum class Slot { kGradInput, kGradRecurrent, kGradProjected, kGradNormalised, kPackedInputs, kCount };
constexpr int64_t kWorkspaceBytes = int64_t(16) << 20;

inline at::Tensor workspace(Slot slot, at::IntArrayRef shape, const at::TensorOptions& options, bool zeroed) {
  thread_local std::array<at::Tensor, static_cast<size_t>(Slot::kCount)> kept;
  at::Tensor& room = kept[static_cast<size_t>(slot)];
  const int64_t numel = c10::multiply_integers(shape);
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  const bool free = room.defined() && room.storage().use_count() == 1;  // what was handed out is gone
  if (!(free && room.dtype() == options.dtype() && room.numel() >= numel)) {
    if (bytes > kWorkspaceBytes) return zeroed ? at::zeros(shape, options) : at::empty(shape, options);
    room = at::empty({numel}, options);  // flat, not a view: a view holds its base's storage too
  }
  at::Tensor out = room.narrow(0, 0, numel).view(shape);
  return zeroed ? out.zero_() : out;
}

}  // namespace rnnkit
