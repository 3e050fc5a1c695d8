// Redis's glob patterns (stringmatchlen): '*', '?', '[abc]', '[^a-z]', '\x'. Used for ACL key
// and channel patterns.
#pragma once

#include <string_view>

namespace respite {

// True when `s` matches `pattern` as Redis's stringmatchlen decides, without its exponential
// backtracking: every token but '*' matches exactly one byte, so only the latest '*' needs to
// be retried, and a match costs at most O(|pattern| * |s|) whatever the pattern's shape.
bool glob_match(std::string_view pattern, std::string_view s, bool nocase = false);

}  // namespace respite
