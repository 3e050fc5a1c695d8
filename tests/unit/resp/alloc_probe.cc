#include "unit/resp/alloc_probe.h"

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define RESPITE_ALLOC_PROBE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RESPITE_ALLOC_PROBE 0
#endif
#endif
#ifndef RESPITE_ALLOC_PROBE
#define RESPITE_ALLOC_PROBE 1
#endif

namespace {
std::atomic<bool> armed{false};
std::atomic<size_t> largest{0};

[[maybe_unused]] void* allocate(size_t n) {
  if (armed.load(std::memory_order_relaxed)) {
    size_t cur = largest.load(std::memory_order_relaxed);
    while (n > cur && !largest.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
    }
  }
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

namespace alloc_probe {
bool available() { return RESPITE_ALLOC_PROBE != 0; }
void start() {
  largest.store(0);
  armed.store(true);
}
size_t stop() {
  armed.store(false);
  return largest.load();
}
}  // namespace alloc_probe

#if RESPITE_ALLOC_PROBE
// The nothrow and aligned forms are left to the library: libstdc++'s nothrow forms call these.
void* operator new(size_t n) { return allocate(n); }
void* operator new[](size_t n) { return allocate(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
#endif
