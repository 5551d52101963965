// Room for one outstanding Asio operation at a time (Asio's "allocation" example): a
// connection's steady-state wait, read, write or timer operation is allocated from it instead
// of the heap or Asio's per-thread cache of recycled blocks (one block per thread, each as
// large as the largest operation the thread ran). Header only; used by the broker's
// transports and by tern-bench.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace tern::actors::listener {

template <std::size_t Size, std::size_t Align = alignof(std::max_align_t)>
class handler_slot {
 public:
  handler_slot() = default;
  handler_slot(const handler_slot&) = delete;
  handler_slot& operator=(const handler_slot&) = delete;

  /// The slot's storage, or nullptr when it is taken or too small (the caller then uses
  /// the heap).
  void* claim(std::size_t size, std::size_t align) {
    if (is_used_ || size > Size || align > Align) {
      return nullptr;
    }
    is_used_ = true;
    return storage_;
  }
  /// False when `p` is not this slot's storage (it came from the heap).
  bool release(const void* p) {
    if (p != static_cast<const void*>(storage_)) {
      return false;
    }
    is_used_ = false;
    return true;
  }

 private:
  alignas(Align) unsigned char storage_[Size];
  bool is_used_ = false;
};

/// Allocates from a handler_slot, or from the heap when the slot is taken or too small.
template <class T, class Slot>
class slot_allocator {
 public:
  using value_type = T;
  explicit slot_allocator(Slot& slot) noexcept : slot_(&slot) {}
  template <class U>
  explicit slot_allocator(const slot_allocator<U, Slot>& other) noexcept : slot_(other.slot()) {}
  template <class U>
  struct rebind {
    using other = slot_allocator<U, Slot>;
  };

  T* allocate(std::size_t n) const {
    if (void* p = slot_->claim(sizeof(T) * n, alignof(T))) {
      return static_cast<T*>(p);
    }
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) const {
    if (!slot_->release(p)) {
      std::allocator<T>().deallocate(p, n);
    }
  }
  Slot* slot() const noexcept { return slot_; }
  template <class U>
  bool operator==(const slot_allocator<U, Slot>& other) const noexcept {
    return slot_ == other.slot();
  }
  template <class U>
  bool operator!=(const slot_allocator<U, Slot>& other) const noexcept {
    return slot_ != other.slot();
  }

 private:
  Slot* slot_;
};

/// A completion handler whose operation Asio allocates from `slot`.
template <class Handler, class Slot>
class in_slot {
 public:
  using allocator_type = slot_allocator<Handler, Slot>;
  in_slot(Slot& slot, Handler h) : slot_(&slot), h_(std::move(h)) {}
  allocator_type get_allocator() const noexcept { return allocator_type(*slot_); }
  template <class... Args>
  void operator()(Args&&... args) {
    h_(std::forward<Args>(args)...);
  }

 private:
  Slot* slot_;
  Handler h_;
};

template <class Slot, class Handler>
in_slot<Handler, Slot> in(Slot& slot, Handler h) {
  return in_slot<Handler, Slot>(slot, std::move(h));
}

}  // namespace tern::actors::listener
