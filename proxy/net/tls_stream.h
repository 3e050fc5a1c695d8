// TlsStream: the Stream contract (proxy/net/stream.h) over TLS. It owns a TcpStream below and
// is that stream's handler; between the two, OpenSSL runs on memory BIOs: ciphertext the
// TcpStream reads is written into the read BIO, SSL_read decrypts into the handler's buffer;
// what the handler appends to out() is encrypted by SSL_write into the write BIO, whose bytes
// go to the TcpStream's output. OpenSSL never touches the socket, so the event loop, the
// cork and the one-write-in-flight rule stay the TcpStream's.
//
// Roles: a server stream (accepted) handshakes once the handler calls read_start(); a client
// stream (TcpStream::connect through tcp()) starts its handshake when the TCP connect
// completes. Either way the handler hears on_stream_ready() after the handshake.
//
// Output: flushed plaintext is encrypted in chunks (kChunk), each chunk's ciphertext moved to
// the TcpStream's output at once, and no more while that holds kCipherQueue bytes (the rest
// follows on on_stream_written): the write BIO never holds more than a chunk.
//
// Bounds: before the handshake completes at most kMaxHandshakeBytes of ciphertext are taken
// from the peer (more is an error, as is anything that is not TLS); after it, input is
// decrypted as the handler reads it, so a handler that stops reading stops the socket too.
// Output OpenSSL makes by itself after the handshake (a KeyUpdate's answer) counts against
// kOutputCap: a peer that asks for it without reading fails the stream rather than grow it.
// The read BIO is replaced once empty when a large read left it big, so an idle connection
// does not keep the high-water mark of its largest request; the plaintext queue drops what was
// encrypted already before it grows.
#pragma once

#include <memory>
#include <string>

#include "proxy/net/stream.h"
#include "proxy/net/tls_context.h"

typedef struct bio_st BIO;

namespace respite {

class TlsStream final : public Stream, private Stream::Handler {
 public:
  static constexpr size_t kMaxHandshakeBytes = 256 * 1024;

  // `ctx` decides the role. `keep_output` as TcpStream's (for the plaintext and the
  // ciphertext output alike). A client checks the peer against `host` (TlsContext::new_ssl).
  // When no SSL can be made the stream fails: its handshake reports on_stream_error.
  TlsStream(uv_loop_t* loop, Stream::Handler* h, size_t keep_output,
            std::shared_ptr<const TlsContext> ctx, std::string_view host = {});
  ~TlsStream() override;

  // The TCP stream below: accept(), connect() and set_options() go to it.
  TcpStream& tcp() { return tcp_; }
  bool established() const { return established_; }
  // Why the handshake (or a record) failed: OpenSSL's reasons, for the log.
  const std::string& error() const { return error_; }

  bool read_start(Buffer* in) override;
  void read_stop() override;
  int flush() override;
  // Also while plaintext waits to be encrypted (it is, a chunk at a time, as the socket takes it).
  bool writing() const override { return tcp_.writing() || plain_left() > 0; }
  size_t unwritten() const override { return out_.size() + plain_left() + tcp_.unwritten(); }
  // Bytes OpenSSL's memory BIOs hold allocated (for tests: at most about a chunk each).
  size_t bio_bytes() const;
  int shutdown() override;
  void close() override;
  std::string peer_name() const override { return tcp_.peer_name(); }
  std::string local_name() const override { return tcp_.local_name(); }
  int fd() const override { return tcp_.fd(); }

 private:
  // The TcpStream's handler.
  void on_stream_data() override;
  void on_stream_eof() override;
  void on_stream_error(const char* op, int status) override;
  void on_stream_ready() override;
  void on_stream_written() override;
  void on_stream_closed() override;
  size_t read_hint() override { return handler_->read_hint(); }

  void pump();        // the handshake, then decryption, as far as the input goes
  bool handshake();   // true once established (and not closing)
  void decrypt();     // into the handler's buffer, then tells it
  int drain_output(); // the write BIO into the TcpStream's output, and flushes it
  void take_output(); // the write BIO into the TcpStream's output
  int encrypt();      // plain_ a chunk at a time while the ciphertext queue is short; flushes
  void shed_read_bio();  // a fresh read BIO for an empty one grown by a large read
  void finish_shutdown_if_due();
  size_t plain_left() const { return plain_.size() - plain_off_; }

  std::shared_ptr<const TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  TcpStream tcp_;
  Buffer cipher_in_;     // what the TcpStream read, until it is in the read BIO
  std::string plain_;    // flushed plaintext, encrypted from plain_off_ on as the socket takes it
  size_t plain_off_ = 0;
  Buffer* in_ = nullptr; // the handler's
  size_t keep_output_;
  size_t handshake_bytes_ = 0;
  bool established_ = false;
  bool failed_ = false;
  bool started_ = false;  // the handler has called read_start() once
  bool in_pump_ = false;
  std::string error_;
};

}  // namespace respite
