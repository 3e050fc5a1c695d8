// Prometheus text format 0.0.4 for /metrics: metric families, and every number of a PROXY INFO
// snapshot as one family, named and described by the field list (proxy/ops/stats.h).
#pragma once

#include <string>
#include <string_view>

#include "proxy/ops/info.h"
#include "proxy/ops/stats.h"

namespace respite {

// One metric family: # HELP (backslashes and newlines escaped), # TYPE and, unless `value` is
// empty (the caller appends labelled samples), one sample.
void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::string_view value);

// respite_<name>; a counter is <name>_total, a leading "total_" moved to the end
// (total_commands_processed: respite_commands_processed_total).
std::string metric_name(const InfoFieldDef& d);

// Every counter and gauge of `snap`, in the list's order (kText fields are left out).
void append_info_metrics(std::string& out, const InfoSnapshot& snap);

}  // namespace respite
