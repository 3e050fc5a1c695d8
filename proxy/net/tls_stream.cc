// TlsStream: TLS over a TcpStream with OpenSSL memory BIOs (see tls_stream.h).
#include "proxy/net/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <climits>

namespace respite {

namespace {
constexpr size_t kRecord = 16384;        // a TLS record's plaintext at most
constexpr size_t kChunk = 64 * 1024;        // plaintext per SSL_write
constexpr size_t kCipherQueue = 256 * 1024; // ciphertext queued below before encrypting more
// Ciphertext queued below past which the peer is not reading what its own TLS messages make us
// send: encrypt() stops at kCipherQueue plus one chunk, so only such messages go beyond.
constexpr size_t kOutputCap = kCipherQueue + 2 * kChunk;
constexpr size_t kReadBioKeep = 4 * kRecord;  // a read BIO larger than this is replaced when empty

size_t mem_capacity(BIO* b) {
  BUF_MEM* m = nullptr;
  if (!b) return 0;
  BIO_get_mem_ptr(b, &m);
  return m ? m->max : 0;
}
}  // namespace

TlsStream::TlsStream(uv_loop_t* loop, Stream::Handler* h, size_t keep_output,
                     std::shared_ptr<const TlsContext> ctx, std::string_view host)
    : Stream(h), ctx_(std::move(ctx)), tcp_(loop, this, keep_output), keep_output_(keep_output) {
  ssl_ = ctx_->new_ssl(host);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !rbio_ || !wbio_) {
    if (rbio_) BIO_free(rbio_);
    if (wbio_) BIO_free(wbio_);
    if (ssl_) SSL_free(ssl_);
    ssl_ = nullptr;
    rbio_ = wbio_ = nullptr;
    failed_ = true;
    error_ = tls_error_text("cannot make an SSL (out of memory, or an unusable server name)");
    return;
  }
  BIO_set_mem_eof_return(rbio_, -1);  // empty: "retry", never end of file
  BIO_set_mem_eof_return(wbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
}

TlsStream::~TlsStream() {
  if (ssl_) SSL_free(ssl_);
}

bool TlsStream::read_start(Buffer* in) {
  in_ = in;
  if (closing_ || failed_) return false;
  const bool resumed = started_ && !reading_;
  started_ = true;
  reading_ = true;
  if (!tcp_.read_start(&cipher_in_)) return false;
  // Input taken from the socket before a stop and not yet decrypted (see stream.h).
  if (resumed && established_ && !in_pump_ &&
      (BIO_ctrl_pending(rbio_) > 0 || SSL_pending(ssl_) > 0))
    decrypt();
  return true;
}

void TlsStream::read_stop() {
  reading_ = false;
  // The handshake reads on its own: a handler that stops before it is done (a client refused
  // by maxclients) still gets its error written once the handshake completes.
  if (established_) tcp_.read_stop();
}

void TlsStream::on_stream_ready() {  // the TCP connect completed: a client handshakes now
  if (closing_) return;
  if (failed_) {  // no SSL to handshake with
    handler_->on_stream_error("handshake", UV_EPROTO);
    return;
  }
  if (!tcp_.read_start(&cipher_in_)) {
    handler_->on_stream_error("read", UV_EPIPE);
    return;
  }
  pump();
}

void TlsStream::on_stream_data() {
  if (closing_ || failed_) return;
  std::string_view b = cipher_in_.readable();
  if (!established_) {
    handshake_bytes_ += b.size();
    if (handshake_bytes_ > kMaxHandshakeBytes) {
      failed_ = true;
      error_ = "handshake larger than 256 KB";
      handler_->on_stream_error("handshake", UV_EPROTO);
      return;
    }
  }
  // A memory BIO takes all of it (one TCP read, at most 1 MB).
  if (BIO_write(rbio_, b.data(), static_cast<int>(b.size())) != static_cast<int>(b.size())) {
    failed_ = true;
    error_ = "out of memory";
    handler_->on_stream_error("read", UV_ENOMEM);
    return;
  }
  cipher_in_.consume(b.size());
  cipher_in_.shrink_if_idle(4 * kRecord);  // a burst's large read buffer is given back
  pump();
  shed_read_bio();
}

void TlsStream::shed_read_bio() {
  if (closing_ || failed_ || !rbio_ || BIO_ctrl_pending(rbio_) != 0 ||
      mem_capacity(rbio_) <= kReadBioKeep)
    return;
  BIO* fresh = BIO_new(BIO_s_mem());
  if (!fresh) return;  // the big one stays: no harm but memory
  BIO_set_mem_eof_return(fresh, -1);
  SSL_set0_rbio(ssl_, fresh);  // frees the old one
  rbio_ = fresh;
}

void TlsStream::pump() {
  if (failed_) return;
  in_pump_ = true;
  if (established_ || handshake()) {
    if (reading_ && in_ && !closing_) decrypt();
  }
  in_pump_ = false;
}

bool TlsStream::handshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    if (int w = drain_output(); w != 0) {
      handler_->on_stream_error("write", w);
      return false;
    }
    handler_->on_stream_ready();
    if (closing_) return false;
    if (!reading_) tcp_.read_stop();  // the handler stopped (or has not started) reading
    if (!out_.empty()) {  // held by flush() during the handshake: the handler flushes it now
      handler_->on_stream_written();
      if (closing_) return false;
    }
    return true;
  }
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (int w = drain_output(); w != 0) handler_->on_stream_error("write", w);
    return false;
  }
  failed_ = true;
  error_ = tls_error_text(e == SSL_ERROR_SYSCALL ? "unexpected end of the handshake"
                                                 : "handshake failed");
  if (long v = SSL_get_verify_result(ssl_); v != X509_V_OK)  // which check refused the peer
    error_ += std::string(" (") + X509_verify_cert_error_string(v) + ")";
  drain_output();  // the alert that says why, if the socket takes it
  handler_->on_stream_error("handshake", UV_EPROTO);
  return false;
}

void TlsStream::decrypt() {
  bool got = false, eof = false, bad = false;
  for (;;) {
    size_t avail;
    char* p = in_->prepare(kRecord, &avail);
    ERR_clear_error();
    int n = SSL_read(ssl_, p, static_cast<int>(std::min<size_t>(avail, INT_MAX)));
    if (n > 0) {
      in_->commit(static_cast<size_t>(n));
      got = true;
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify: the end of the peer's data
      eof = true;
    } else {
      bad = true;
      failed_ = true;
      error_ = tls_error_text("bad record");
    }
    break;
  }
  // Post-handshake messages (a KeyUpdate's answer, an alert) go out whatever happens next.
  int w = drain_output();
  const bool flooded = tcp_.unwritten() > kOutputCap;  // see kOutputCap
  if (got) {
    handler_->on_stream_data();
    if (closing_) return;
  }
  if (bad) {
    handler_->on_stream_error("read", UV_EPROTO);
  } else if (flooded) {
    failed_ = true;
    error_ = "the peer's TLS messages made more output than it reads";
    handler_->on_stream_error("read", UV_ENOBUFS);
  } else if (w != 0) {
    handler_->on_stream_error("write", w);
  } else if (eof) {
    tcp_.read_stop();
    handler_->on_stream_eof();
  }
}

size_t TlsStream::bio_bytes() const { return mem_capacity(rbio_) + mem_capacity(wbio_); }

void TlsStream::take_output() {
  size_t pending = BIO_ctrl_pending(wbio_);
  if (pending > 0) {
    std::string& o = tcp_.out();
    size_t old = o.size();
    o.resize(old + pending);
    int n = BIO_read(wbio_, o.data() + old, static_cast<int>(std::min<size_t>(pending, INT_MAX)));
    o.resize(old + static_cast<size_t>(std::max(n, 0)));
  }
}

int TlsStream::drain_output() {
  take_output();
  return tcp_.flush();
}

int TlsStream::flush() {
  if (closing_) return 0;
  if (failed_) return UV_EPROTO;
  if (!established_) return 0;  // held until the handshake is done (see stream.h)
  if (!out_.empty()) {
    if (plain_left() == 0) {
      plain_.clear();
      plain_off_ = 0;
      plain_.swap(out_);
    } else {
      // What was encrypted already goes before the queue grows (once it is half the queue, so
      // the move is paid once per byte): a connection flushed on every loop turn while its
      // socket is slow (an upstream) must not keep everything it ever sent.
      if (plain_off_ >= plain_.size() / 2) {
        plain_.erase(0, plain_off_);
        plain_off_ = 0;
      }
      plain_.append(out_);
      out_.clear();
    }
    if (out_.capacity() > keep_output_) std::string().swap(out_);
  }
  return encrypt();
}

int TlsStream::encrypt() {
  if (closing_) return 0;
  while (plain_left() > 0) {
    if (tcp_.unwritten() >= kCipherQueue) {
      if (tcp_.writing()) break;  // more on on_stream_written
      if (int rc = tcp_.flush(); rc != 0) return rc;
      if (tcp_.unwritten() >= kCipherQueue) break;  // nothing taken: never spin
      continue;
    }
    const size_t n = std::min(plain_left(), kChunk);
    ERR_clear_error();
    // A memory BIO grows: SSL_write takes the chunk or fails for good.
    if (SSL_write(ssl_, plain_.data() + plain_off_, static_cast<int>(n)) <= 0) {
      failed_ = true;
      error_ = tls_error_text("write failed");
      return UV_EPROTO;
    }
    plain_off_ += n;
    take_output();
  }
  if (plain_left() == 0) {
    plain_.clear();
    plain_off_ = 0;
    if (plain_.capacity() > keep_output_) std::string().swap(plain_);
  }
  return tcp_.flush();
}

void TlsStream::on_stream_written() {
  if (closing_) return;
  // Ciphertext made while the write was in flight, then the plaintext still waiting.
  if (int rc = established_ && !failed_ ? encrypt() : tcp_.flush(); rc != 0) {
    handler_->on_stream_error("write", rc);
    return;
  }
  if (closing_) return;
  finish_shutdown_if_due();
  if (closing_) return;
  if (established_ && plain_left() == 0) handler_->on_stream_written();
}

void TlsStream::finish_shutdown_if_due() {
  if (shutdown_ != Shutdown::kPending || plain_left() > 0) return;
  shutdown_ = Shutdown::kSent;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // close_notify, after the last byte of data
  int rc = drain_output();
  if (rc == 0) rc = tcp_.shutdown();
  if (rc != 0) handler_->on_stream_error("shutdown", rc);
}

int TlsStream::shutdown() {
  if (closing_ || shutdown_ != Shutdown::kNone) return 0;
  if (established_ && !failed_) {
    if (int rc = flush(); rc != 0) return rc;
    if (plain_left() > 0) {  // the close_notify follows the data (on_stream_written)
      shutdown_ = Shutdown::kPending;
      return 0;
    }
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, before the FIN
    if (int rc = drain_output(); rc != 0) return rc;
  }
  shutdown_ = Shutdown::kSent;
  return tcp_.shutdown();
}

void TlsStream::on_stream_eof() {
  // Records that came before the FIN were decrypted already (pump). A peer that closes without
  // close_notify ends its data here too, as Redis takes it. Before the handshake it is a peer
  // that went away (a port probe): a read error, since nothing can be written to it any more
  // (a handler waiting to write would wait for ever).
  if (closing_) return;
  if (!established_) {
    failed_ = true;
    error_ = "end of input before the handshake completed";
    handler_->on_stream_error("read", UV_EOF);
    return;
  }
  handler_->on_stream_eof();
}

void TlsStream::on_stream_error(const char* op, int status) {
  if (closing_) return;
  handler_->on_stream_error(op, status);
}

void TlsStream::close() {
  if (closing_) return;
  // A courtesy close_notify when nothing else is in flight (a partial record must not be
  // followed by another); the socket closes right after either way.
  if (established_ && !failed_ && shutdown_ == Shutdown::kNone && !tcp_.writing()) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    drain_output();
  }
  closing_ = true;
  reading_ = false;
  tcp_.close();
}

void TlsStream::on_stream_closed() {
  handler_->on_stream_closed();  // may delete this: nothing after
}

}  // namespace respite
