// The client side of component tests, on the same loop as respite: a TCP client that sends
// raw RESP and collects complete raw replies, and helpers that run the loop until a condition
// holds or a bound (loop time, turns) is reached. Time passes only through the loop's own
// timers: nothing sleeps.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "resp/reply_scanner.h"

namespace component {

// Runs `loop` one turn at a time (UV_RUN_ONCE) until `done()` holds; false when `limit_ms` of
// loop time or `max_turns` turns passed first.
bool run_until(uv_loop_t* loop, const std::function<bool()>& done, uint64_t limit_ms = 5000,
               size_t max_turns = 1000000);
// Runs `loop` for `ms` of loop time.
void run_for(uv_loop_t* loop, uint64_t ms);

class TestClient {
 public:
  TestClient(uv_loop_t* loop, int port);
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  void send(std::string_view raw);  // queued until connected
  void command(std::initializer_list<std::string_view> args);
  const std::vector<std::string>& replies() const { return replies_; }
  size_t count() const { return replies_.size(); }
  std::string reply(size_t i) const { return i < replies_.size() ? replies_[i] : "<none>"; }
  bool connected() const { return connected_; }
  bool eof() const { return eof_; }    // the server closed the connection (or connect failed)
  bool gone() const { return gone_; }  // the handle's close callback ran
  void close();

 private:
  struct WriteReq {
    uv_write_t req;
    std::string data;
  };
  void write(std::string_view raw);
  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);

  uv_tcp_t tcp_;
  uv_connect_t connect_req_;
  bool connected_ = false;
  bool eof_ = false;
  bool closing_ = false;
  bool gone_ = false;
  std::string before_connect_;
  std::string in_;
  char read_buf_[16384];
  resp::ReplyScanner scanner_;
  std::vector<std::string> replies_;
};

}  // namespace component
