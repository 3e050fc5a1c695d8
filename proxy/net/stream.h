// The transport seam: every connection respite has (clients, upstream Redis, HTTP) reads and
// writes bytes through a Stream, never through a socket directly. TcpStream is plain TCP; a TLS
// stream is a Stream that owns a TcpStream and sits between it and the connection (ciphertext
// below, plaintext above, OpenSSL with memory BIOs in between), so the connections above do not
// change when it arrives.
//
// Contract with the connection that owns it (its Handler):
// - Input: the stream appends what it reads to the Buffer given to read_start() and calls
//   on_stream_data(). End of input is on_stream_eof(); a failure is on_stream_error().
// - Output: the handler appends to out() and calls flush(); flush() writes what it can at once
//   and queues the rest (one write in flight at most; bytes appended meanwhile go in the next).
//   When a queued write completes, on_stream_written() lets the handler flush again (it may
//   have limits to check first). A failed write is reported by flush()'s result when it fails
//   at once, else by on_stream_error(). The output is one contiguous buffer, not a list of
//   slices: replies are small and appended in order, so one copy into the output and one
//   write() per loop turn beat writev's per-slice bookkeeping (docs/DESIGN.md).
// - Half-close: shutdown() sends FIN once every byte handed over so far (out() and the write in
//   flight) is written, then the stream goes on reading (the handler waits for the peer's EOF,
//   e.g. an HTTP linger). Nothing may be appended after it. Its failure is shutdown()'s result
//   when it fails at once, else on_stream_error("shutdown", ...); success is not reported.
// - Ready: on_stream_ready() once the stream can carry the handler's bytes: for TCP when the
//   connect completes (accepted streams are ready at once); for TLS after the handshake. Until
//   then a TLS stream holds what flush() is given; once ready, if out() holds bytes, it calls
//   on_stream_written() so the handler flushes them. A failed handshake is
//   on_stream_error("handshake", UV_EPROTO); the peer's EOF before the handshake completed is
//   on_stream_error("read", UV_EOF) (not on_stream_eof: nothing could be written to it).
// - Read resumption: read_start() after read_stop() may call on_stream_data() before it
//   returns, when the stream holds input it received before the stop (TLS: a record already
//   read from the socket). It never does on the first read_start().
// - Close: close() stops everything; on_stream_closed() is the last call the stream makes, and
//   the handler may free the stream (and itself) there.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/net/buffer.h"

namespace respite {

class Stream {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void on_stream_data() = 0;
    virtual void on_stream_eof() = 0;
    // `op` is "connect", "read", "write" or "shutdown"; `status` a libuv error code.
    virtual void on_stream_error(const char* op, int status) = 0;
    virtual void on_stream_ready() {}
    virtual void on_stream_written() = 0;
    virtual void on_stream_closed() = 0;
    // Bytes to make room for before the next read (at least 16 KB is offered regardless).
    virtual size_t read_hint() { return 0; }
  };

  virtual ~Stream() = default;

  // Starts (or resumes) reading into `in`; false if the stream cannot read (closed).
  virtual bool read_start(Buffer* in) = 0;
  virtual void read_stop() = 0;
  bool reading() const { return reading_; }

  // Bytes to send: append, then flush().
  std::string& out() { return out_; }
  // Writes what it can and queues the rest; returns 0 or a libuv error (nothing is reported
  // through the handler for it). A no-op while a write is in flight.
  virtual int flush() = 0;
  // A write is in flight (TLS: of the ciphertext below).
  virtual bool writing() const { return writing_active_; }
  // Bytes not yet handed to the kernel: out() plus the write in flight (TLS: plus the
  // ciphertext not yet written).
  virtual size_t unwritten() const { return out_.size() + writing_.size(); }
  // Half-closes the write side after what is queued (see the contract above); returns 0 or a
  // libuv error. Once only: later calls do nothing.
  virtual int shutdown() = 0;
  bool shut_down() const { return shutdown_ != Shutdown::kNone; }

  virtual void close() = 0;
  bool closing() const { return closing_; }

  // Socket facts for CLIENT LIST, logs and the PROXY commands.
  virtual std::string peer_name() const = 0;   // "ip:port", "[ip6]:port"
  virtual std::string local_name() const = 0;  // the same for the local end
  virtual int fd() const = 0;                  // -1 when it has none

 protected:
  explicit Stream(Handler* h) : handler_(h) {}
  Handler* handler_;
  std::string out_;      // appended by the handler
  std::string writing_;  // handed to the kernel, in flight
  bool writing_active_ = false;
  bool reading_ = false;
  bool closing_ = false;
  // kPending: asked while a write was in flight; the FIN follows the rest of the output.
  enum class Shutdown : uint8_t { kNone, kPending, kSent } shutdown_ = Shutdown::kNone;
};

// Plain TCP on a libuv loop.
class TcpStream final : public Stream {
 public:
  // `keep_output` is the output capacity kept after a flush empties it (a larger buffer, grown
  // by a burst, is given back).
  TcpStream(uv_loop_t* loop, Handler* h, size_t keep_output);
  ~TcpStream() override = default;

  // A connection from `listener`; ready at once. Returns 0 or a libuv error (then close()).
  int accept(uv_stream_t* listener);
  // Connects to `addr`: 0, then on_stream_ready() or on_stream_error("connect", ...) follows; or
  // a libuv error when the connect fails at once (nothing is reported then: the caller handles
  // it, e.g. with -ERR ... (reconnecting) instead of a connection that is dead already).
  int connect(const sockaddr* addr);
  // TCP options: no Nagle delay; keepalive probes after `keepalive_s` idle seconds (0: off).
  void set_options(int keepalive_s);

  bool read_start(Buffer* in) override;
  void read_stop() override;
  int flush() override;
  int shutdown() override;
  void close() override;
  std::string peer_name() const override;
  std::string local_name() const override;
  int fd() const override;

 private:
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_connect(uv_connect_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  int send_fin();
  static void on_close(uv_handle_t* h);
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  uv_tcp_t tcp_;
  uv_write_t write_req_;
  uv_connect_t connect_req_;
  uv_shutdown_t shutdown_req_;
  Buffer* in_ = nullptr;
  size_t keep_output_;
};

// "ip:port" ("[ip]:port" for IPv6) of an address, as Redis prints addresses.
std::string address_name(const sockaddr* sa);

}  // namespace respite
