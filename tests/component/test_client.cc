#include "tests/component/test_client.h"

#include "resp/reply_writer.h"

namespace component {

bool run_until(uv_loop_t* loop, const std::function<bool()>& done, uint64_t limit_ms,
               size_t max_turns) {
  if (done()) return true;
  // The limit is a timer on the loop: it also keeps UV_RUN_ONCE from blocking past it.
  struct Limit {
    uv_timer_t timer;
    bool expired = false;
  };
  auto* limit = new Limit;
  uv_timer_init(loop, &limit->timer);
  limit->timer.data = limit;
  uv_timer_start(&limit->timer, [](uv_timer_t* t) { static_cast<Limit*>(t->data)->expired = true; },
                 limit_ms, 0);
  bool ok = false;
  for (size_t turn = 0; turn < max_turns && !limit->expired; ++turn) {
    uv_run(loop, UV_RUN_ONCE);
    if (done()) {
      ok = true;
      break;
    }
  }
  uv_timer_stop(&limit->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&limit->timer),
           [](uv_handle_t* h) { delete static_cast<Limit*>(h->data); });
  return ok;
}

void run_for(uv_loop_t* loop, uint64_t ms) {
  run_until(loop, [] { return false; }, ms);
}

TestClient::TestClient(uv_loop_t* loop, int port) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  connect_req_.data = this;
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  if (uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addr), on_connect) != 0) {
    eof_ = true;
    close();
  }
}

void TestClient::on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<TestClient*>(req->data);
  if (status < 0 || c->closing_) {
    c->eof_ = true;
    c->close();
    return;
  }
  c->connected_ = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp_), on_alloc, on_read);
  if (!c->before_connect_.empty()) {
    std::string pending;
    pending.swap(c->before_connect_);
    c->write(pending);
  }
}

void TestClient::send(std::string_view raw) {
  if (closing_) return;
  if (!connected_) before_connect_.append(raw);
  else write(raw);
}

void TestClient::command(std::initializer_list<std::string_view> args) {
  std::string out;
  resp::Writer(out, 2).command(args);
  send(out);
}

void TestClient::write(std::string_view raw) {
  auto* w = new WriteReq{{}, std::string(raw)};
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, on_write) != 0) delete w;
}

void TestClient::on_write(uv_write_t* req, int) { delete static_cast<WriteReq*>(req->data); }

void TestClient::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<TestClient*>(h->data);
  *buf = uv_buf_init(c->read_buf_, sizeof c->read_buf_);
}

void TestClient::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<TestClient*>(s->data);
  if (nread < 0) {
    c->eof_ = true;
    c->close();
    return;
  }
  c->in_.append(buf->base, static_cast<size_t>(nread));
  while (!c->in_.empty()) {
    resp::ScanResult r = c->scanner_.scan(c->in_);
    if (r.status == resp::ScanResult::Status::NeedMore) break;
    if (r.status == resp::ScanResult::Status::Error) {  // kept whole, for the test to see
      c->replies_.push_back("<not RESP>" + c->in_);
      c->in_.clear();
      c->scanner_.reset();
      break;
    }
    c->replies_.push_back(c->in_.substr(0, r.consumed));
    c->in_.erase(0, r.consumed);
  }
}

void TestClient::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void TestClient::on_close(uv_handle_t* h) { static_cast<TestClient*>(h->data)->gone_ = true; }

}  // namespace component
