// TcpStream: the Stream over a libuv TCP handle. The one place respite writes to a socket.
#include <fmt/format.h>

#include <algorithm>

#include "proxy/net/stream.h"

namespace respite {

namespace {
constexpr size_t kMinRead = 16384;
constexpr size_t kMaxRead = 1 << 20;  // one read's buffer at most, whatever the hint
}  // namespace

std::string address_name(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    uv_ip6_name(a, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(a->sin6_port));
  }
  if (sa->sa_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    uv_ip4_name(a, ip, sizeof ip);
    return fmt::format("{}:{}", ip, ntohs(a->sin_port));
  }
  return "?:0";
}

TcpStream::TcpStream(uv_loop_t* loop, Handler* h, size_t keep_output)
    : Stream(h), keep_output_(keep_output) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
}

int TcpStream::accept(uv_stream_t* listener) { return uv_accept(listener, stream()); }

int TcpStream::connect(const sockaddr* addr) {
  connect_req_.data = this;
  return uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect);
}

void TcpStream::on_connect(uv_connect_t* req, int status) {
  auto* s = static_cast<TcpStream*>(req->data);
  if (s->closing_) return;
  if (status < 0) s->handler_->on_stream_error("connect", status);
  else s->handler_->on_stream_ready();
}

void TcpStream::set_options(int keepalive_s) {
  uv_tcp_nodelay(&tcp_, 1);
  if (keepalive_s > 0) uv_tcp_keepalive(&tcp_, 1, static_cast<unsigned>(keepalive_s));
}

bool TcpStream::read_start(Buffer* in) {
  in_ = in;
  if (reading_) return true;
  if (closing_ || uv_read_start(stream(), on_alloc, on_read) != 0) return false;
  reading_ = true;
  return true;
}

void TcpStream::read_stop() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void TcpStream::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* s = static_cast<TcpStream*>(h->data);
  size_t want = std::max(kMinRead, std::min(s->handler_->read_hint(), kMaxRead));
  size_t avail;
  char* p = s->in_->prepare(want, &avail);
  *buf = uv_buf_init(p, static_cast<unsigned>(std::min(avail, kMaxRead)));
}

void TcpStream::on_read(uv_stream_t* st, ssize_t nread, const uv_buf_t*) {
  auto* s = static_cast<TcpStream*>(st->data);
  if (nread > 0) {
    s->in_->commit(static_cast<size_t>(nread));
    s->handler_->on_stream_data();
  } else if (nread == UV_EOF) {
    s->read_stop();
    s->handler_->on_stream_eof();
  } else if (nread < 0) {
    s->read_stop();
    s->handler_->on_stream_error("read", static_cast<int>(nread));
  }
}

int TcpStream::flush() {
  if (writing_active_ || closing_ || out_.empty()) return 0;
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  int n = uv_try_write(stream(), &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) return n;
  if (static_cast<size_t>(n) == out_.size()) {
    out_.clear();
    if (out_.capacity() > keep_output_) std::string().swap(out_);
    return 0;
  }
  // The rest goes out when the socket can take it; appends meanwhile go to a fresh out_.
  writing_.swap(out_);
  out_.clear();
  uv_buf_t rest = uv_buf_init(writing_.data() + n, static_cast<unsigned>(writing_.size() - n));
  write_req_.data = this;
  int rc = uv_write(&write_req_, stream(), &rest, 1, on_write);
  if (rc != 0) {
    writing_.clear();
    return rc;
  }
  writing_active_ = true;
  return 0;
}

void TcpStream::on_write(uv_write_t* req, int status) {
  auto* s = static_cast<TcpStream*>(req->data);
  s->writing_active_ = false;
  s->writing_.clear();
  if (s->writing_.capacity() > s->keep_output_) std::string().swap(s->writing_);
  if (s->closing_) return;
  if (status < 0) {
    s->handler_->on_stream_error("write", status);
    return;
  }
  if (s->shutdown_ == Shutdown::kPending) {
    int rc = s->send_fin();
    if (rc != 0) {
      s->handler_->on_stream_error("shutdown", rc);
      return;
    }
  }
  s->handler_->on_stream_written();
}

int TcpStream::shutdown() {
  if (closing_ || shutdown_ != Shutdown::kNone) return 0;
  if (writing_active_) {  // on_write sends the rest of the output, then the FIN
    shutdown_ = Shutdown::kPending;
    return 0;
  }
  return send_fin();
}

// What out() holds goes first: libuv sends the FIN after the writes queued before it.
int TcpStream::send_fin() {
  shutdown_ = Shutdown::kSent;
  int rc = flush();
  if (rc != 0) return rc;
  shutdown_req_.data = this;
  return uv_shutdown(&shutdown_req_, stream(), on_shutdown);
}

// A shutdown still pending when the stream closes ends with UV_ECANCELED, before on_close.
void TcpStream::on_shutdown(uv_shutdown_t* req, int status) {
  auto* s = static_cast<TcpStream*>(req->data);
  if (s->closing_ || status >= 0) return;
  s->handler_->on_stream_error("shutdown", status);
}

void TcpStream::close() {
  if (closing_) return;
  closing_ = true;
  read_stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void TcpStream::on_close(uv_handle_t* h) {
  auto* s = static_cast<TcpStream*>(h->data);
  s->handler_->on_stream_closed();  // may delete s: nothing after this
}

std::string TcpStream::peer_name() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?:0";
  return address_name(reinterpret_cast<sockaddr*>(&ss));
}

std::string TcpStream::local_name() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?:0";
  return address_name(reinterpret_cast<sockaddr*>(&ss));
}

int TcpStream::fd() const {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return -1;
  return fd;
}

}  // namespace respite
