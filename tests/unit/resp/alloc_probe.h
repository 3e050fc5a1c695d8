// Records the largest single heap allocation made between start() and stop(), by replacing the
// global operator new for the whole unit_resp binary (alloc_probe.cc). Used to prove that a
// declared count never turns into an allocation.
#pragma once

#include <cstddef>

namespace alloc_probe {
void start();
size_t stop();  // largest single allocation, in bytes, since start()
}  // namespace alloc_probe
