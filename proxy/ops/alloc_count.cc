#include "proxy/ops/alloc_count.h"

namespace respite {
std::atomic<uint64_t> g_allocations{0};
}
