#include "tests/component/rig.h"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "proxy/ops/log.h"

namespace component {

Rig::Rig(RigOptions o) {
  respite::set_log_level(respite::LogLevel::Warning);
  respite::Config cfg;
  cfg.port = 0;
  cfg.bind = "127.0.0.1";
  cfg.upstream_timeout_ms = o.upstream_timeout_ms;
  cfg.cache_max_memory = o.cache ? cfg.cache_max_memory : 0;
  if (o.configure) o.configure(cfg);
  // As proxy/main.cc: one cache for the loop(s), configured from the settings.
  cache::Settings cs;
  cs.max_memory = cfg.cache_max_memory;
  cs.ttl_ms = static_cast<uint64_t>(cfg.cache_ttl_ms);
  cs.max_keys = cfg.cache_max_keys;
  cs.max_value = cfg.cache_max_value;
  cs.xfetch_beta = 0;  // no early refreshes: a test's fetch count is its own misses
  respite::configure_cache_threads(cs, 1);
  shared_.cache = std::make_unique<cache::Cache<respite::CacheWaiter>>(cs);
  server_ = std::make_unique<respite::Server>(cfg, &shared_, 0);
  shared_.servers.push_back(server_.get());
  shared_.start_ms = uv_now(server_->loop());

  up_ = std::make_unique<ScriptedUpstream>(server_->loop());
  int port = up_->start();
  if (port <= 0) return;
  if (o.script) o.script(*up_);
  respite::Config& live = server_->config();
  live.upstream_host = "127.0.0.1";
  live.upstream_port = port;
  live.upstream = fmt::format("127.0.0.1:{}", port);
  if (server_->start() != 0) return;
  started_ = true;
  if (server_->port() <= 0) return;
  ready_ = run_until(
      [&] { return shared_idle() && (!o.cache || !o.wait_link || server_->tracking_up()); });
}

Rig::~Rig() {
  if (torn_down_) return;
  bool drained = false, clean = false;
  shut_down(&drained, &clean);
  if (clean) uv_loop_init(server_->loop());  // ~Server closes the loop once more
}

bool Rig::shared_idle() {
  if (!server_->upstream_connected()) return false;
  respite::UpstreamConn* u = server_->shared_conn(2, 0);
  return u && u->ready() && u->pending() == 0;
}

TestClient& Rig::client(int port) {
  clients_.push_back(std::make_unique<TestClient>(loop(), port ? port : server_->port()));
  TestClient& c = *clients_.back();
  run_until([&] { return c.connected() || c.eof(); });
  return c;
}

int Rig::shut_down(bool* drained, bool* closed_cleanly) {
  uv_loop_t* loop = server_->loop();
  *drained = true;
  if (started_) {
    server_->begin_shutdown();
    *drained = run_until([&] { return server_->connected_clients() == 0; });
    // The caller's loop ends here: begin_shutdown() has stopped it (uv_stop) or will at its
    // next turn. A stop requested outside uv_run() is consumed by the next uv_run(), which
    // must not be finish()'s.
    uv_run(loop, UV_RUN_NOWAIT);
  }
  up_->stop();
  for (auto& c : clients_) c->close();
  if (started_) {
    // finish() runs the loop until no handle is left: one left open would keep it running
    // for ever. The watchdog (unreferenced: it keeps nothing alive) stops the loop instead,
    // and the open handle is then reported below.
    uv_timer_init(loop, &watchdog_);
    watchdog_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&watchdog_));
    uv_timer_start(&watchdog_, [](uv_timer_t* t) {
      static_cast<Rig*>(t->data)->watchdog_fired_ = true;
      uv_stop(t->loop);
    }, 10000, 0);
    server_->finish();
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
  }
  // Close callbacks still due (a start() that failed, the watchdog).
  for (int i = 0; i < 100 && uv_loop_alive(loop); ++i) uv_run(loop, UV_RUN_NOWAIT);
  int open = 0;
  uv_walk(loop, [](uv_handle_t* h, void* arg) {
    if (!uv_is_closing(h)) {
      ++*static_cast<int*>(arg);
      UNSCOPED_INFO("handle left open: " << uv_handle_type_name(uv_handle_get_type(h)));
    }
  }, &open);
  *closed_cleanly = open == 0 && !watchdog_fired_ && uv_loop_close(loop) == 0;
  return watchdog_fired_ ? -1 : open;
}

void Rig::teardown() {
  torn_down_ = true;
  bool drained = false, clean = false;
  int open = shut_down(&drained, &clean);
  CHECK(drained);  // begin_shutdown() let every client go
  CHECK(open == 0);  // -1: finish() did not return on its own (a handle kept the loop alive)
  CHECK(up_->all_closed());
  for (auto& c : clients_) CHECK(c->gone());
  CHECK(clean);  // uv_loop_close() succeeded
  // ~Server closes its loop again: give it an empty, open one (closing a closed loop twice is
  // not allowed).
  if (clean) uv_loop_init(server_->loop());
}

}  // namespace component
