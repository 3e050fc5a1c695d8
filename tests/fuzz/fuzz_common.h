// Shared helpers for the libFuzzer targets: a byte reader for the fuzzer's input, and a probe
// that records the largest single heap allocation made while it is armed (through the
// sanitizer allocator's malloc hook, so it works under ASan, which owns operator new).
#pragma once

#include <cstddef>

// The fuzz build (clang, ASan) has the sanitizer allocator's hooks; the plain replay build of
// the same targets (replay_main.cc, in the default unit run) counts through a replaced
// operator new instead.
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_SANITIZER_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_SANITIZER_HOOKS 1
#endif
#endif
#ifndef FUZZ_SANITIZER_HOOKS
#define FUZZ_SANITIZER_HOOKS 0
#endif

#if FUZZ_SANITIZER_HOOKS
#if __has_include(<sanitizer/allocator_interface.h>)
#include <sanitizer/allocator_interface.h>
#else
// g++ ships no such header, but its libasan has the function (the sanitizers' common ABI).
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, std::size_t),
    void (*free_hook)(const volatile void*));
#endif
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fuzz {

// Aborts with a message: libFuzzer saves the input that got here as a crash.
[[noreturn]] inline void fail(const char* what, size_t a = 0, size_t b = 0) {
  std::fprintf(stderr, "PROPERTY VIOLATED: %s (%zu, %zu)\n", what, a, b);
  std::abort();
}

#define FUZZ_CHECK(cond, ...)                     \
  do {                                            \
    if (!(cond)) ::fuzz::fail(#cond __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)

// A tiny deterministic generator for split points (seeded from the input, so a crash replays).
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }
};

namespace alloc {
inline bool armed = false;
inline size_t largest = 0;
inline void on_malloc(const volatile void*, size_t n) {
  if (armed && n > largest) largest = n;
}
inline void on_free(const volatile void*) {}
inline void install() {
#if FUZZ_SANITIZER_HOOKS
  __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
#endif
}
struct Scope {  // arms the probe for the lifetime of the scope
  Scope() {
    largest = 0;
    armed = true;
  }
  ~Scope() { armed = false; }
};
}  // namespace alloc

}  // namespace fuzz
