// Heap allocations made by the process so far, counted by the respite binary's replacement of
// the global operator new (proxy/main.cc). Stays 0 in programs that do not replace it (tests).
// PROXY DEBUG ALLOCATIONS reports it, so a test can show that cached reads do not allocate.
#pragma once

#include <atomic>
#include <cstdint>

namespace respite {
extern std::atomic<uint64_t> g_allocations;
}
