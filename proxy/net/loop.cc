// Loop: the libuv handles every event loop thread has.
#include "proxy/net/loop.h"

#include <signal.h>

namespace respite {

Loop::Loop(std::function<void()> on_cork, std::function<void()> on_tick, uint64_t tick_ms)
    : on_cork_(std::move(on_cork)), on_tick_(std::move(on_tick)), tick_ms_(tick_ms) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, on_async);  // before any other loop may post()
  async_.data = this;
  uv_idle_init(&loop_, &idle_);
  uv_check_init(&loop_, &cork_);
  uv_timer_init(&loop_, &timer_);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  idle_.data = cork_.data = timer_.data = sigterm_.data = sigint_.data = sighup_.data = this;
}

Loop::~Loop() { uv_loop_close(&loop_); }

void Loop::start(bool signals, std::function<void(int)> on_signal) {
  uv_check_start(&cork_, on_check);
  uv_timer_start(&timer_, on_timer, tick_ms_, tick_ms_);
  on_signal_ = std::move(on_signal);
  if (signals) {
    uv_signal_start(&sigterm_, Loop::on_signal, SIGTERM);
    uv_signal_start(&sigint_, Loop::on_signal, SIGINT);
    uv_signal_start(&sighup_, Loop::on_signal, SIGHUP);
  }
}

void Loop::on_check(uv_check_t* h) {
  auto* l = static_cast<Loop*>(h->data);
  l->tick_micros();
  l->on_cork_();
}

void Loop::on_timer(uv_timer_t* h) { static_cast<Loop*>(h->data)->on_tick_(); }

void Loop::on_signal(uv_signal_t* h, int signum) { static_cast<Loop*>(h->data)->on_signal_(signum); }

void Loop::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(posted_mu_);
  if (async_closed_) return;  // this loop has ended
  posted_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Loop::on_async(uv_async_t* h) {
  auto* l = static_cast<Loop*>(h->data);
  {
    std::lock_guard<std::mutex> lk(l->posted_mu_);
    l->posted_spare_.swap(l->posted_);
  }
  for (auto& fn : l->posted_spare_) fn();
  l->posted_spare_.clear();
}

void Loop::keep_polling(bool on) {
  if (on == idle_on_) return;
  idle_on_ = on;
  if (on) uv_idle_start(&idle_, on_idle);
  else uv_idle_stop(&idle_);
}

void Loop::close() {
  {
    std::lock_guard<std::mutex> lk(posted_mu_);
    async_closed_ = true;
  }
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&cork_), reinterpret_cast<uv_handle_t*>(&timer_),
                         reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sigint_),
                         reinterpret_cast<uv_handle_t*>(&sighup_),
                         reinterpret_cast<uv_handle_t*>(&async_),
                         reinterpret_cast<uv_handle_t*>(&idle_)})
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  // A stop() that came outside uv_run (a shutdown begun by a test driving the loop) makes the
  // next run return at once: a second run then does the closing.
  for (int i = 0; i < 2 && uv_run(&loop_, UV_RUN_DEFAULT) != 0; ++i) {
  }
}

}  // namespace respite
