// Byte sizes written the way redis.conf writes them, for --cache-max-memory, --cache-max-value
// and PROXY CONFIG SET. Standalone: no other respite header needed.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cache {

// Parses "<digits>[unit]" with redis.conf's units, case-insensitive:
//   (none) or b = bytes, k = 1000, kb = 1024, m = 1000^2, mb = 1024^2, g = 1000^3, gb = 1024^3.
// Returns nullopt for anything else: empty input, signs, spaces, fractions, unknown units, or a
// result that does not fit in 64 bits. "0" is valid (it turns the cache off where used so).
std::optional<uint64_t> parse_memory(std::string_view text);

}  // namespace cache
