// Small string helpers shared by the command handlers: one home for each.
#pragma once

#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

namespace respite {

// ASCII lowercase of one character (what tolower does in the "C" locale, without the call).
constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// ASCII case-insensitive equality (arguments, options, reply fields): the one copy. Each side
// ends at its first NUL byte, as with strcasecmp, which is how Redis compares every option
// keyword: "STREAMS\0x" is STREAMS to Redis, so it must be to respite's key finding and ACL
// checks too (else a keyword with a NUL after it would hide keys from them).
constexpr bool ieq(std::string_view a, std::string_view b) {
  a = a.substr(0, a.find('\0'));
  b = b.substr(0, b.find('\0'));
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

inline std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return r;
}

inline std::string upper(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return r;
}

// Redis's string2ll for arguments: no leading zeros, no '+', fits in a long long.
inline bool parse_ll(std::string_view s, long long& out) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !(s.size() > 1 && s[0] == '0') &&
         !(s.size() > 1 && s[0] == '-' && s[1] == '0');
}

// The value of one hex digit (either case), -1 for any other character.
inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Compares a secret in time that depends on the lengths only, never on where the first
// difference is (passwords from clients, as Redis's time-independent strcmp).
inline bool secret_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = a.size() > b.size() ? a.size() : b.size();
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// "major.minor[.patch]" at least major.minor (an unreadable version counts as 0.0): what the
// upstream has (Server::upstream_version) decides subcommands that came with a Redis version.
inline bool version_at_least(std::string_view v, int major, int minor) {
  long long ma = 0, mi = 0;
  size_t dot = v.find('.');
  if (!parse_ll(v.substr(0, dot), ma)) return false;
  if (dot != std::string_view::npos) {
    std::string_view rest = v.substr(dot + 1);
    if (!parse_ll(rest.substr(0, rest.find('.')), mi)) mi = 0;
  }
  return ma > major || (ma == major && mi >= minor);
}

}  // namespace respite
