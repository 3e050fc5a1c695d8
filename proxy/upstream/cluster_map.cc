// Key slots and the slot map's own bookkeeping (the replies are read in cluster_parse.cc).
#include "proxy/upstream/cluster_map.h"

#include <fmt/format.h>

namespace respite {

namespace {
// The CRC16 table (polynomial 0x1021, no reflection), built at compile time.
constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint16_t c = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) c = static_cast<uint16_t>((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint16_t, 256> kCrc16 = make_crc16_table();
}  // namespace

uint16_t crc16(std::string_view s) {
  uint16_t crc = 0;
  for (unsigned char ch : s) crc = static_cast<uint16_t>((crc << 8) ^ kCrc16[((crc >> 8) ^ ch) & 0xFF]);
  return crc;
}

uint16_t key_slot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<uint16_t>(crc16(key) & (kClusterSlots - 1));
}

std::string ClusterNodeAddr::name() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

bool ClusterMap::index() {
  owner.fill(kNoShard);
  for (size_t s = 0; s < shards.size(); ++s)
    for (auto [lo, hi] : shards[s].ranges)
      for (uint32_t slot = lo; slot <= hi && slot < kClusterSlots; ++slot) {
        if (owner[slot] != kNoShard) return false;
        owner[slot] = static_cast<uint16_t>(s);
      }
  return true;
}

size_t ClusterMap::slots_covered() const {
  size_t n = 0;
  for (uint16_t o : owner) n += o != kNoShard;
  return n;
}

uint16_t ClusterMap::shard_of(std::string_view name) const {
  for (size_t s = 0; s < shards.size(); ++s)
    if (shards[s].master.name() == name) return static_cast<uint16_t>(s);
  return kNoShard;
}

bool mark_moving_slots(std::string_view nodes, const ClusterMap& map, uint16_t shard,
                       std::bitset<kClusterSlots>& moving) {
  while (!nodes.empty()) {
    const size_t nl = nodes.find('\n');
    std::string_view line = nodes.substr(0, nl);
    nodes = nl == std::string_view::npos ? std::string_view{} : nodes.substr(nl + 1);
    std::vector<std::string_view> f;
    for (size_t i = 0; i < line.size();) {
      size_t j = line.find(' ', i);
      if (j == std::string_view::npos) j = line.size();
      if (j > i) f.push_back(line.substr(i, j - i));
      i = j + 1;
    }
    if (f.size() < 8 || f[2].find("myself") == std::string_view::npos) continue;
    std::bitset<kClusterSlots> claimed;
    auto num = [](std::string_view t, size_t& at) {
      long v = 0;
      size_t k = at;
      while (k < t.size() && t[k] >= '0' && t[k] <= '9') v = v * 10 + (t[k++] - '0');
      const bool ok = k > at && v >= 0 && v < static_cast<long>(kClusterSlots);
      at = k;
      return ok ? v : -1L;
    };
    for (size_t i = 8; i < f.size(); ++i) {
      std::string_view t = f[i];
      size_t at = t[0] == '[' ? 1 : 0;
      const long a = num(t, at);
      if (a < 0) continue;
      if (t[0] == '[') {  // [slot->-id] migrating, [slot-<-id] importing
        moving.set(static_cast<size_t>(a));
        continue;
      }
      long b = a;
      if (at < t.size() && t[at] == '-') {
        ++at;
        b = num(t, at);
      }
      for (long x = a; x >= 0 && x <= b; ++x) claimed.set(static_cast<size_t>(x));
    }
    for (uint32_t slot = 0; slot < kClusterSlots; ++slot)
      if (map.owner[slot] == shard && !claimed.test(slot)) moving.set(slot);
    return true;
  }
  return false;
}

}  // namespace respite
