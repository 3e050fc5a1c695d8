// One event loop thread's plumbing: the libuv loop, the cork (a check handle run once per loop
// turn after I/O, where buffered output is written), a periodic tick, cross-thread posting, the
// batch clock, and shutdown of the handles. What runs in the cork and the tick is the owner's
// (Server): the loop only calls it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace respite {

class Loop {
 public:
  // `tick_ms`: the period of on_tick.
  Loop(std::function<void()> on_cork, std::function<void()> on_tick, uint64_t tick_ms);
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop();

  uv_loop_t* uv() { return &loop_; }
  uint64_t now() const { return uv_now(&loop_); }  // ms, as of this loop turn

  // The clock in microseconds, read once per batch of request work (each check phase, each
  // upstream read, each timer tick, each HTTP lookup) rather than once per request: reading it
  // per request was 5-8% of a pipelined GET or SET profile. Entries expire and round trips are
  // timed with the precision of one such batch, as Redis uses one time snapshot per command.
  int64_t micros() const { return clock_us_; }
  int64_t tick_micros() { return clock_us_ = static_cast<int64_t>(uv_hrtime() / 1000); }

  // Starts the cork, the tick and (with `signals`) SIGTERM/SIGINT/SIGHUP to `on_signal`.
  void start(bool signals, std::function<void(int)> on_signal);
  // Runs `fn` on this loop's thread (from any thread); dropped once the loop has ended.
  void post(std::function<void()> fn);
  // While on, the loop's next poll does not block (input deferred to the next turn).
  void keep_polling(bool on);
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }
  void stop() { uv_stop(&loop_); }
  // Closes the loop's own handles (posting ends first) and runs until every handle on the loop
  // has closed: the owner closes its connections before.
  void close();

 private:
  static void on_check(uv_check_t* h);
  static void on_timer(uv_timer_t* h);
  static void on_async(uv_async_t* h);
  static void on_signal(uv_signal_t* h, int signum);
  static void on_idle(uv_idle_t*) {}

  uv_loop_t loop_;
  uv_async_t async_;
  uv_check_t cork_;
  uv_timer_t timer_;
  uv_idle_t idle_;
  uv_signal_t sigterm_, sigint_, sighup_;
  std::function<void()> on_cork_, on_tick_;
  std::function<void(int)> on_signal_;
  uint64_t tick_ms_;
  bool idle_on_ = false;
  std::mutex posted_mu_;
  bool async_closed_ = false;
  std::vector<std::function<void()>> posted_, posted_spare_;
  int64_t clock_us_ = static_cast<int64_t>(uv_hrtime() / 1000);
};

}  // namespace respite
