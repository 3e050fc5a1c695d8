// A free list of small blocks for the node-based containers of the single-flight table.
//
// Why: every cache miss creates a flight and every fill ends one. With the global allocator,
// batches of such short-lived nodes were freed between the entries being filled at the same
// time; the allocator then carved later entries out of those holes and left slivers nobody
// could use (about 7 bytes of RSS per cached entry when filling a million keys). Recycling the
// nodes here keeps them out of the entries' way.
//
// Blocks are grouped by size in 16-byte classes up to kMaxBlock; larger requests (and arrays
// such as hash buckets) go to operator new. At most kMaxFree blocks per class are kept, so what
// the pool holds is bounded by its busiest moment, capped. Not thread-safe: one pool per
// single-flight table, used under that shard's lock.
#pragma once

#include <array>
#include <cstddef>
#include <new>

namespace cache {

class NodePool {
 public:
  static constexpr size_t kMaxBlock = 256;
  static constexpr size_t kMaxFree = 2048;  // per class: at most ~8 MB over 16 shards

  NodePool() = default;
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;
  ~NodePool() {
    for (Free& f : free_) {
      while (f.head) {
        Block* b = f.head;
        f.head = b->next;
        ::operator delete(b);
      }
    }
  }

  void* get(size_t bytes) {
    if (bytes == 0 || bytes > kMaxBlock) return ::operator new(bytes);
    Free& f = free_[cls(bytes)];
    if (Block* b = f.head) {
      f.head = b->next;
      f.count--;
      return b;
    }
    return ::operator new(round(bytes));
  }

  void put(void* p, size_t bytes) {
    if (bytes == 0 || bytes > kMaxBlock) {
      ::operator delete(p);
      return;
    }
    Free& f = free_[cls(bytes)];
    if (f.count >= kMaxFree) {
      ::operator delete(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = f.head;
    f.head = b;
    f.count++;
  }

  size_t free_blocks() const {
    size_t n = 0;
    for (const Free& f : free_) n += f.count;
    return n;
  }

 private:
  struct Block {
    Block* next;
  };
  struct Free {
    Block* head = nullptr;
    size_t count = 0;
  };
  static size_t cls(size_t bytes) { return (bytes - 1) / 16; }
  static size_t round(size_t bytes) { return (cls(bytes) + 1) * 16; }

  std::array<Free, kMaxBlock / 16> free_{};
};

// An allocator over a NodePool, for std::unordered_map and std::basic_string.
template <class T>
class PoolAlloc {
 public:
  using value_type = T;

  explicit PoolAlloc(NodePool* pool) noexcept : pool_(pool) {}
  template <class U>
  PoolAlloc(const PoolAlloc<U>& o) noexcept : pool_(o.pool()) {}

  T* allocate(size_t n) { return static_cast<T*>(pool_->get(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { pool_->put(p, n * sizeof(T)); }

  NodePool* pool() const noexcept { return pool_; }
  template <class U>
  bool operator==(const PoolAlloc<U>& o) const noexcept {
    return pool_ == o.pool();
  }

 private:
  NodePool* pool_;
};

}  // namespace cache
