#include "proxy/front/acl/glob.h"

#include <cstddef>

namespace respite {
namespace {

unsigned char fold(unsigned char c, bool nocase) {
  return nocase && c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c - 'A' + 'a') : c;
}

// Matches the one-byte token at pattern[p] ('?', a class, an escape or a literal; never '*')
// against `c`, and moves p past it. The class rules are stringmatchlen's: '^' negates, "a-z"
// is a range (ends in either order), '\' escapes inside too, and a class the pattern ends in
// before its ']' is closed there.
bool match_one(std::string_view pat, size_t& p, unsigned char c, bool nocase) {
  const size_t n = pat.size();
  c = fold(c, nocase);
  switch (pat[p]) {
    case '?':
      ++p;
      return true;
    case '[': {
      ++p;
      bool negate = false;
      if (p < n && pat[p] == '^') {
        negate = true;
        ++p;
      }
      bool match = false;
      while (p < n && pat[p] != ']') {
        if (pat[p] == '\\' && p + 1 < n) {
          if (fold(static_cast<unsigned char>(pat[p + 1]), nocase) == c) match = true;
          p += 2;
        } else if (p + 2 < n && pat[p + 1] == '-') {
          unsigned char lo = fold(static_cast<unsigned char>(pat[p]), nocase);
          unsigned char hi = fold(static_cast<unsigned char>(pat[p + 2]), nocase);
          if (lo > hi) {
            unsigned char t = lo;
            lo = hi;
            hi = t;
          }
          if (c >= lo && c <= hi) match = true;
          p += 3;
        } else {
          if (fold(static_cast<unsigned char>(pat[p]), nocase) == c) match = true;
          ++p;
        }
      }
      if (p < n) ++p;  // the ']'
      return negate ? !match : match;
    }
    case '\\':
      if (p + 1 < n) ++p;  // a trailing '\' is itself
      [[fallthrough]];
    default: {
      bool m = fold(static_cast<unsigned char>(pat[p]), nocase) == c;
      ++p;
      return m;
    }
  }
}

}  // namespace

bool glob_match(std::string_view pat, std::string_view s, bool nocase) {
  const size_t n = pat.size();
  size_t p = 0, i = 0;
  size_t star_p = std::string_view::npos;  // the pattern after the latest '*'
  size_t star_i = 0;                       // where that '*' started matching in s
  while (i < s.size()) {
    if (p < n && pat[p] == '*') {
      while (p < n && pat[p] == '*') ++p;
      if (p == n) return true;
      star_p = p;
      star_i = i;
      continue;
    }
    if (p < n) {
      size_t q = p;
      if (match_one(pat, q, static_cast<unsigned char>(s[i]), nocase)) {
        p = q;
        ++i;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    // Let the latest '*' take one more byte and try the rest again from there.
    p = star_p;
    i = ++star_i;
  }
  while (p < n && pat[p] == '*') ++p;
  return p == n;
}

}  // namespace respite
