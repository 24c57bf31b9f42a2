// Memory kept from one call of a kernel to the next.
//
// A buffer that a call frees goes back to the system and comes again as fresh pages, whose first
// touch costs more than the work on small sizes: the blocks of the tensors the kernels return are
// kept in one cache (BlockCache), and the buffers a kernel keeps to itself per thread, each handed
// out again while nothing else holds it.
#pragma once

#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <pthread.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <vector>

namespace rnnkit {

// The memory of the tensors the kernels return (outputs, what a backward reads, gradients) in
// blocks of at least kCachedBytes, kept when they are freed and handed out again. glibc hands the
// top of its heap back to the system once a free leaves more than its trim threshold there, and
// the next call then faults on each page it touches first: with layer norm at H = 10 that more
// than doubled a forward's time, in some processes and not others, as the heap's history moved
// the threshold. The blocks kept go back to the system, oldest first, past $RNNKIT_BLOCK_CACHE_MB
// megabytes (read when the kernels load; 256 if unset, 0 keeps none).
constexpr size_t kCachedBytes = size_t(64) << 10;
constexpr size_t kDefaultCacheMegabytes = 256;

class BlockCache final : public c10::Allocator {
 public:
  // The one cache, never destroyed: a tensor may be freed after static destructors ran.
  static BlockCache& get() {
    static BlockCache* cache = new BlockCache();
    return *cache;
  }

  c10::DataPtr allocate(size_t n) override {
    const size_t size = (std::max<size_t>(n, 1) + kPage - 1) / kPage * kPage;
    void* block = take(size);
    if (block == nullptr) {
      block = c10::alloc_cpu(kHeader + size);
      *static_cast<size_t*>(block) = size;
    }
    return {static_cast<char*>(block) + kHeader, block, &BlockCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static constexpr size_t kPage = 4096;
  static constexpr size_t kHeader = 64;  // the block's size, before data that stays 64-byte aligned

  BlockCache() {
    const char* megabytes = std::getenv("RNNKIT_BLOCK_CACHE_MB");
    const long long asked = megabytes ? std::strtoll(megabytes, nullptr, 10) : kDefaultCacheMegabytes;
    capacity_ = static_cast<size_t>(std::clamp<long long>(asked, 0, 1 << 30)) << 20;  // unreadable or negative: none
    // A child forked while another thread held the lock would wait for it forever.
    pthread_atfork([] { get().mutex_.lock(); }, [] { get().mutex_.unlock(); }, [] { get().mutex_.unlock(); });
  }

  // A kept block of ``size`` bytes, or up to an eighth more, or nullptr.
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = by_size_.lower_bound(size);
    if (found == by_size_.end() || found->first > size + size / 8) return nullptr;
    void* block = found->second->second;
    bytes_ -= found->first;
    kept_.erase(found->second);
    by_size_.erase(found);
    return block;
  }

  static void release(void* block) {
    const size_t size = *static_cast<size_t*>(block);
    if (!get().keep(block, size)) c10::free_cpu(block);
  }

  bool keep(void* block, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (size > capacity_) return false;
    while (bytes_ + size > capacity_) {  // the oldest go
      const auto oldest = kept_.begin();
      auto entry = by_size_.lower_bound(oldest->first);
      while (entry->second != oldest) ++entry;
      by_size_.erase(entry);
      bytes_ -= oldest->first;
      c10::free_cpu(oldest->second);
      kept_.erase(oldest);
    }
    kept_.emplace_back(size, block);
    by_size_.emplace(size, std::prev(kept_.end()));
    bytes_ += size;
    return true;
  }

  std::mutex mutex_;
  std::list<std::pair<size_t, void*>> kept_;  // oldest first
  std::multimap<size_t, std::list<std::pair<size_t, void*>>::iterator> by_size_;
  size_t bytes_ = 0;
  size_t capacity_;
};

// at::empty(shape, options) for a kernel's result on the CPU: its memory from the BlockCache where
// it takes at least kCachedBytes, else from torch's CPU allocator. Made here, not through the
// dispatcher: a layer-normalised LSTM's generated token allocates 34 tensors, most of them small or
// empty, and each call of at::empty went through the dispatcher's lookup and profiling hooks.
inline at::Tensor empty_tensor(at::IntArrayRef shape, const at::TensorOptions& options) {
  const auto dtype = c10::typeMetaToScalarType(options.dtype());
  const size_t bytes = c10::multiply_integers(shape) * c10::elementSize(dtype);
  c10::Allocator* allocator = bytes < kCachedBytes ? c10::GetCPUAllocator() : &BlockCache::get();
  return at::Tensor(
      at::detail::empty_generic(shape, allocator, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, std::nullopt));
}

// at::zeros(shape, options) for a kernel's result, as empty_tensor (all bits zero: 0.0 in a floating type).
inline at::Tensor zero_tensor(at::IntArrayRef shape, const at::TensorOptions& options) {
  at::Tensor out = empty_tensor(shape, options);
  if (out.nbytes() > 0) std::memset(out.data_ptr(), 0, out.nbytes());
  return out;
}

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
    if (bytes > kWorkspaceBytes) return zeroed ? zero_tensor(shape, options) : empty_tensor(shape, options);
    room = at::empty({numel}, options);  // flat, not a view: a view holds its base's storage too
  }
  at::Tensor out = room.narrow(0, 0, numel).view(shape);
  return zeroed ? out.zero_() : out;
}

}  // namespace rnnkit
