// Records the largest single heap allocation made between start() and stop(), by replacing the
// global operator new for the whole unit_resp binary (alloc_probe.cc). Used to prove that a
// declared count never turns into an allocation. Under AddressSanitizer, which owns operator
// new itself, the probe is off: available() is false and stop() returns 0.
#pragma once

#include <cstddef>

namespace alloc_probe {
bool available();
void start();
size_t stop();  // largest single allocation, in bytes, since start()
}  // namespace alloc_probe
