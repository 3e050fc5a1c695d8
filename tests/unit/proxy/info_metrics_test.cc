// The PROXY INFO field list (proxy/ops/stats.h) and its two renderings: INFO text and
// Prometheus text, both from one snapshot.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "proxy/ops/info.h"
#include "proxy/ops/metrics.h"
#include "proxy/ops/stats.h"

using namespace respite;

namespace {

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

InfoSnapshot sample() {
  InfoSnapshot snap;
  snap.set_text(InfoField::respite_version, "0.1.0");
  snap.set_number(InfoField::uptime_in_seconds, 12);
  snap.set_number(InfoField::maxclients, -1);
  snap.set_text(InfoField::upstream, "127.0.0.1:6379");
  snap.set_number(InfoField::upstream_connected, 1);
  snap.set_text(InfoField::cache_coherence, "tracking");
  snap.set_number(InfoField::cache_serving, 1);
  snap.set_text(InfoField::tracking_link, "up");
  Stats loop1, loop2;
  loop1.total_commands_processed++;
  loop2.total_commands_processed++;
  loop2.rejected_connections++;
  snap.add_loop_stats(loop1);
  snap.add_loop_stats(loop2);
  cache::Stats cs;
  cs.cache_hits = 5;
  cs.cache_keys = 2;
  snap.set_cache_stats(cs);
  return snap;
}

}  // namespace

TEST_CASE("INFO field list: sections contiguous, names unique, valid metric names", "[info]") {
  std::set<std::string> names, metrics{"respite_up"};
  std::set<InfoSection> closed;
  InfoSection current = kInfoFields[0].section;
  for (const InfoFieldDef& d : kInfoFields) {
    CHECK(names.insert(std::string(d.name)).second);
    CHECK_FALSE(d.help.empty());
    if (d.section != current) {
      closed.insert(current);
      CHECK(closed.count(d.section) == 0);  // a section comes back: not contiguous
      current = d.section;
    }
    CHECK((d.loops == nullptr || d.kind == InfoKind::kCounter));
    if (d.kind == InfoKind::kText) continue;
    std::string m = metric_name(d);
    CHECK(metrics.insert(m).second);
    for (char c : m) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
  }
  CHECK(&info_field(InfoField::tracking_refused) == &kInfoFields[kInfoFieldCount - 1]);
  CHECK(info_field(InfoField::cache_hits).cache == &cache::Stats::cache_hits);
  CHECK(info_field(InfoField::idle_timeouts).loops == &Stats::idle_timeouts);
}

TEST_CASE("INFO text from a snapshot", "[info]") {
  InfoSnapshot snap = sample();
  std::string all = render_info(snap, "");
  CHECK(all == render_info(snap, "all"));
  CHECK(all.starts_with("# Server\r\nrespite_version:0.1.0\r\nprocess_id:0\r\n"));
  CHECK(contains(all, "\r\nthreads:0\r\n\r\n# Clients\r\n"));
  CHECK(contains(all, "\r\nmaxclients:-1\r\n"));
  CHECK(contains(all, "# Stats\r\ntotal_connections_received:0\r\ntotal_commands_processed:2\r\n"
                      "rejected_connections:1\r\n"));
  CHECK(contains(all, "# Upstream\r\nupstream:127.0.0.1:6379\r\nupstream_connected:1\r\n"
                      "upstream_version:\r\nupstream_errors:0\r\n"));
  CHECK(contains(all, "# Cache\r\ncache_hits:5\r\ncache_misses:0\r\ncache_keys:2\r\n"));
  CHECK(all.ends_with("\r\ncache_enabled:0\r\ncache_coherence:tracking\r\ncache_serving:1\r\n"
                      "tracking_link:up\r\ntracking_refused:0\r\n"));
  CHECK(render_info(snap, "clients") ==
        "# Clients\r\nconnected_clients:0\r\nmaxclients:-1\r\npinned_clients:0\r\n");
  CHECK(render_info(snap, "nosuchsection").empty());
}

TEST_CASE("Prometheus text from a snapshot", "[info]") {
  std::string out;
  append_info_metrics(out, sample());
  CHECK(contains(out, "# HELP respite_cache_hits_total Lookups answered from the cache"));
  CHECK(contains(out, "# TYPE respite_cache_hits_total counter\nrespite_cache_hits_total 5\n"));
  CHECK(contains(out, "# TYPE respite_cache_keys gauge\nrespite_cache_keys 2\n"));
  CHECK(contains(out, "# HELP respite_commands_processed_total Commands received from clients\n"
                      "# TYPE respite_commands_processed_total counter\n"
                      "respite_commands_processed_total 2\n"));
  CHECK(contains(out, "# TYPE respite_rejected_connections_total counter\n"
                      "respite_rejected_connections_total 1\n"));
  CHECK(contains(out, "# TYPE respite_uptime_in_seconds gauge\nrespite_uptime_in_seconds 12\n"));
  CHECK(contains(out, "respite_upstream_connected 1\n"));
  CHECK(contains(out, "respite_maxclients -1\n"));
  CHECK(contains(out, "# TYPE respite_cache_serving gauge\nrespite_cache_serving 1\n"));
  CHECK(contains(out, "# TYPE respite_tracking_refused gauge\nrespite_tracking_refused 0\n"));
  // Text fields are INFO only.
  CHECK_FALSE(contains(out, "version"));
  CHECK_FALSE(contains(out, "tracking_link"));
  CHECK_FALSE(contains(out, "respite_cache_coherence"));
  CHECK_FALSE(contains(out, "respite_upstream "));
  CHECK_FALSE(contains(out, "respite_bind"));
  // In the list's order.
  CHECK(out.find("respite_process_id") < out.find("respite_connected_clients"));
  CHECK(out.find("respite_swapdb_flushes_total") < out.find("respite_upstream_rtt_p50_us"));
  CHECK(out.find("respite_cache_early_refreshes_total") < out.find("respite_cache_enabled"));
}

TEST_CASE("append_metric escapes help text", "[info]") {
  std::string out;
  append_metric(out, "respite_x", "gauge", "a\\b\nc", "3");
  CHECK(out == "# HELP respite_x a\\\\b\\nc\n# TYPE respite_x gauge\nrespite_x 3\n");
  out.clear();
  append_metric(out, "respite_y", "counter", "labelled below", {});
  CHECK(out == "# HELP respite_y labelled below\n# TYPE respite_y counter\n");
}
