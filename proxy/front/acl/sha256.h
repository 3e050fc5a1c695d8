// SHA-256 (FIPS 180-4), for ACL passwords: Redis stores and shows them as the hex digest.
// Self-contained so the ACL module needs no library (and no link change) of its own.
#pragma once

#include <string>
#include <string_view>

namespace respite {

// The 64 lowercase hex digits of SHA-256(data).
std::string sha256_hex(std::string_view data);

}  // namespace respite
