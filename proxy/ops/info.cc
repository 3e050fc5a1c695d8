// PROXY INFO text from a snapshot. See info.h.
#include "proxy/ops/info.h"

#include <fmt/format.h>

#include <iterator>

namespace respite {

void InfoSnapshot::add_loop_stats(const Stats& s) {
  for (size_t i = 0; i < kInfoFieldCount; ++i)
    if (kInfoFields[i].loops) numbers_[i] += static_cast<int64_t>((s.*kInfoFields[i].loops).get());
}

void InfoSnapshot::set_cache_stats(const cache::Stats& s) {
  for (size_t i = 0; i < kInfoFieldCount; ++i)
    if (kInfoFields[i].cache) numbers_[i] = static_cast<int64_t>(s.*kInfoFields[i].cache);
}

std::string InfoSnapshot::value(InfoField f) const {
  return info_field(f).kind == InfoKind::kText ? text(f) : fmt::to_string(number(f));
}

namespace {

void append_node_lines(std::string& out, const InfoSnapshot& snap) {
  for (size_t i = 0; i < snap.nodes.size(); ++i) {
    const InfoSnapshot::NodeLine& n = snap.nodes[i];
    fmt::format_to(std::back_inserter(out),
                   "node{}:addr={},role={},state={},requests={},inflight={},errors={},"
                   "redirects={},tracking={}",
                   i, n.addr, n.role, n.state, n.requests, n.inflight, n.errors, n.redirects,
                   n.tracking);
    if (n.offset >= 0)
      fmt::format_to(std::back_inserter(out), ",offset={},lag_bytes={}", n.offset, n.lag);
    out += "\r\n";
  }
}

}  // namespace

std::string render_info(const InfoSnapshot& snap, std::string_view section) {
  bool all = section.empty() || section == "all";
  std::string out;
  bool any = false;
  InfoSection current{};
  for (size_t i = 0; i < kInfoFieldCount; ++i) {
    const InfoFieldDef& d = kInfoFields[i];
    if (!all && info_section_name(d.section) != section) continue;
    if (!any || d.section != current) {
      if (any && current == InfoSection::upstream) append_node_lines(out, snap);
      if (any) out += "\r\n";
      fmt::format_to(std::back_inserter(out), "# {}\r\n", info_section_title(d.section));
      current = d.section;
      any = true;
    }
    fmt::format_to(std::back_inserter(out), "{}:{}\r\n", d.name,
                   snap.value(static_cast<InfoField>(i)));
  }
  if (any && current == InfoSection::upstream) append_node_lines(out, snap);
  return out;
}

}  // namespace respite
