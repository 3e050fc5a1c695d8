// One component test's world: respite's Server (one loop, index 0, listening on a free
// loopback port), a ScriptedUpstream on that same loop as its upstream, and test clients.
// Every test ends with teardown(), which shuts respite down as a real stop would and then
// requires that every libuv handle on the loop was closed and that the loop closes.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "proxy/front/server.h"
#include "tests/component/scripted_upstream.h"
#include "tests/component/test_client.h"

namespace component {

struct RigOptions {
  int upstream_timeout_ms = 2000;
  // Off: no invalidation link, no fetch connection, no INFO commandstats polls on the shared
  // connection (tests about forwarding see only their own traffic there).
  bool cache = true;
  // Settings beyond these (e.g. cache_coherence), and scripts the upstream has before respite
  // connects (e.g. a refused CLIENT TRACKING).
  std::function<void(respite::Config&)> configure;
  std::function<void(ScriptedUpstream&)> script;
  // ready() waits for the invalidation link too (with the cache on).
  bool wait_link = true;
};

class Rig {
 public:
  explicit Rig(RigOptions o = {});
  ~Rig();  // a test that failed before teardown(): the same steps, unchecked
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // respite is up: started, its shared connection's handshake answered and, with the cache,
  // the invalidation link subscribed.
  bool ready() const { return ready_; }
  respite::Server& srv() { return *server_; }
  ScriptedUpstream& up() { return *up_; }
  uv_loop_t* loop() { return server_->loop(); }

  TestClient& client(int port = 0);  // a new client of respite (or of another port)
  bool run_until(const std::function<bool()>& done, uint64_t limit_ms = 5000) {
    return component::run_until(loop(), done, limit_ms);
  }
  void run_for(uint64_t ms) { component::run_for(loop(), ms); }
  // Runs until `c` holds `n` replies in all.
  bool wait_replies(TestClient& c, size_t n, uint64_t limit_ms = 5000) {
    return run_until([&] { return c.count() >= n; }, limit_ms);
  }
  // The shared RESP2 connection is up and owes nothing (handshake and polls answered).
  bool shared_idle();

  // begin_shutdown(); the loop runs until respite's clients are gone; the scripted upstream
  // and the test clients stop; finish(); then no handle may be left on the loop and
  // uv_loop_close must succeed. Call at the end of every test.
  void teardown();

 private:
  // Returns the number of handles left open (not closing) after finish(); -1 if finish()
  // had to be stopped by the watchdog.
  int shut_down(bool* drained, bool* closed_cleanly);

  respite::Shared shared_;
  std::unique_ptr<respite::Server> server_;
  std::unique_ptr<ScriptedUpstream> up_;
  std::vector<std::unique_ptr<TestClient>> clients_;
  bool started_ = false;
  bool ready_ = false;
  bool torn_down_ = false;
  uv_timer_t watchdog_;
  bool watchdog_fired_ = false;
};

}  // namespace component
