// One PROXY INFO snapshot: every field of the list in proxy/ops/stats.h, its value taken once
// (Server::info_snapshot fills it), then rendered as PROXY INFO text here or as Prometheus text
// (proxy/ops/metrics.h). No I/O, nothing from the event loop.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/stats.h"
#include "proxy/ops/stats.h"

namespace respite {

class InfoSnapshot {
 public:
  // Numbers are kept signed: settings such as maxclients are ints; counters stay far below 2^63.
  void set_number(InfoField f, int64_t v) { numbers_[index(f)] = v; }
  void set_text(InfoField f, std::string v) { texts_[index(f)] = std::move(v); }
  int64_t number(InfoField f) const { return numbers_[index(f)]; }
  const std::string& text(InfoField f) const { return texts_[index(f)]; }

  // Adds one loop's counters to every field whose source is `loops` (call once per loop).
  void add_loop_stats(const Stats& s);
  // Every cache stat at once.
  void set_cache_stats(const cache::Stats& s);

  // The field's value as INFO shows it (a number in decimal, or the text).
  std::string value(InfoField f) const;

  // The upstream nodes, one `node<i>:addr=...,role=...` line each at the end of the upstream
  // section (as Redis's INFO lists its replicas), and labelled series in /metrics.
  struct NodeLine {
    std::string addr;
    std::string role;   // primary, replica
    std::string state;  // up, or why not (down, loading, master_link_status:down ...)
    int64_t requests = 0, inflight = 0, errors = 0, redirects = 0;
    int64_t offset = -1, lag = -1;  // a replica's applied offset and its lag behind the primary
    // The cache's invalidation link on the node (this loop's): up, down, or off (the cache does
    // not read from the node, or cache-coherence ttl).
    std::string tracking = "off";
  };
  std::vector<NodeLine> nodes;

 private:
  static size_t index(InfoField f) { return static_cast<size_t>(f); }
  std::array<int64_t, kInfoFieldCount> numbers_{};
  std::array<std::string, kInfoFieldCount> texts_;
};

// PROXY INFO text: `# Title` then `name:value` lines per section, sections apart by a blank line,
// CRLF line ends, no blank line at the end. `section`: a section's name (lower case), or empty
// or "all" for every section; an unknown name gives "".
std::string render_info(const InfoSnapshot& snap, std::string_view section);

}  // namespace respite
