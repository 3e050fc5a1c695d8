#include "cache/memory_units.h"

#include <limits>

namespace cache {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The multiplier for a unit suffix (already known to be 0-2 characters), or 0 if unknown.
uint64_t unit_multiplier(std::string_view unit) {
  char u[2] = {0, 0};
  for (size_t i = 0; i < unit.size(); i++) u[i] = lower(unit[i]);
  if (unit.empty() || (unit.size() == 1 && u[0] == 'b')) return 1;
  uint64_t decimal = 0;
  switch (u[0]) {
    case 'k': decimal = 1000ull; break;
    case 'm': decimal = 1000ull * 1000; break;
    case 'g': decimal = 1000ull * 1000 * 1000; break;
    default: return 0;
  }
  if (unit.size() == 1) return decimal;
  if (u[1] != 'b') return 0;
  // kb/mb/gb are the binary ones, as in redis.conf.
  switch (u[0]) {
    case 'k': return 1ull << 10;
    case 'm': return 1ull << 20;
    default: return 1ull << 30;
  }
}

}  // namespace

std::optional<uint64_t> parse_memory(std::string_view text) {
  size_t i = 0;
  uint64_t n = 0;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (n > (kMax - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
    i++;
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = text.substr(i);
  if (unit.size() > 2) return std::nullopt;
  uint64_t mul = unit_multiplier(unit);
  if (mul == 0) return std::nullopt;
  if (n != 0 && mul > kMax / n) return std::nullopt;
  return n * mul;
}

}  // namespace cache
