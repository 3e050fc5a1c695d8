// Prometheus text from a PROXY INFO snapshot. See metrics.h.
#include "proxy/ops/metrics.h"

#include <fmt/format.h>

#include <iterator>

namespace respite {

namespace {

void append_help_text(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

}  // namespace

void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::string_view value) {
  fmt::format_to(std::back_inserter(out), "# HELP {} ", name);
  append_help_text(out, help);
  fmt::format_to(std::back_inserter(out), "\n# TYPE {} {}\n", name, type);
  if (!value.empty()) fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

std::string metric_name(const InfoFieldDef& d) {
  std::string_view base = d.name;
  if (d.kind != InfoKind::kCounter) return fmt::format("respite_{}", base);
  if (base.starts_with("total_")) base.remove_prefix(6);
  return fmt::format("respite_{}{}", base, base.ends_with("_total") ? "" : "_total");
}

void append_info_metrics(std::string& out, const InfoSnapshot& snap) {
  for (size_t i = 0; i < kInfoFieldCount; ++i) {
    const InfoFieldDef& d = kInfoFields[i];
    if (d.kind == InfoKind::kText) continue;  // versions, addresses, up/down words
    append_metric(out, metric_name(d), d.kind == InfoKind::kCounter ? "counter" : "gauge", d.help,
                  fmt::to_string(snap.number(static_cast<InfoField>(i))));
  }
  // The nodes: one family per figure, one sample per node (addresses carry no quote or
  // backslash: they are host:port as configured, which the config checked).
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    int64_t (*get)(const InfoSnapshot::NodeLine&);
  };
  static const Family kFamilies[] = {
      {"respite_node_up", "gauge", "1 when the upstream node takes requests (a replica: reads)",
       [](const InfoSnapshot::NodeLine& n) -> int64_t { return n.state == "up"; }},
      {"respite_node_requests_total", "counter", "Client requests sent to the node",
       [](const InfoSnapshot::NodeLine& n) { return n.requests; }},
      {"respite_node_inflight", "gauge", "Client requests sent to the node, reply not yet in",
       [](const InfoSnapshot::NodeLine& n) { return n.inflight; }},
      {"respite_node_errors_total", "counter", "Client requests failed with their connection",
       [](const InfoSnapshot::NodeLine& n) { return n.errors; }},
      {"respite_node_tracking_up", "gauge",
       "1 when the cache's invalidation link to the node is up (the cache may read from it)",
       [](const InfoSnapshot::NodeLine& n) -> int64_t { return n.tracking == "up"; }},
      {"respite_node_replication_lag_bytes", "gauge",
       "A replica's replication offset behind its primary's (-1: not known)",
       [](const InfoSnapshot::NodeLine& n) { return n.role == "replica" ? n.lag : int64_t{-1}; }},
  };
  if (snap.nodes.empty()) return;
  for (const Family& fam : kFamilies) {
    append_metric(out, fam.name, fam.type, fam.help, "");
    for (const auto& n : snap.nodes)
      fmt::format_to(std::back_inserter(out), "{}{{addr=\"{}\",role=\"{}\"}} {}\n", fam.name,
                     n.addr, n.role, fam.get(n));
  }
}

}  // namespace respite
