// Upstream connections: requests from many clients are appended to one output and written once
// per loop turn; replies are framed by the reply scanner and relayed as raw bytes to whoever is
// at the front of the pending queue (Redis answers in order).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "proxy/ops/log.h"
#include "proxy/upstream/upstream_conn.h"

#include "proxy/net/tls_stream.h"
#include "proxy/upstream/node.h"
#include "resp/reply_writer.h"

namespace respite {

// Kept after a flush: a larger output (a burst of pipelined requests) is given back.
constexpr size_t kKeepOutput = 4u << 20;

namespace {
// Over TLS the node's certificate is checked against the node's own host (TlsContext::new_ssl).
Stream* make_stream(uv_loop_t* loop, Stream::Handler* h, const TlsContext* ctx, TcpStream*& tcp,
                    TlsStream*& tls, const std::string& host) {
  if (!ctx) return tcp = new TcpStream(loop, h, kKeepOutput);
  tls = new TlsStream(loop, h, kKeepOutput, ctx->shared_from_this(), host);
  tcp = &tls->tcp();
  return tls;
}
}  // namespace

UpstreamConn::UpstreamConn(UpstreamHost* host, Node* node, int proto, Requester* owner, int db,
                           bool readonly)
    : host_(host), node_(node), readonly_(readonly), proto_(proto), owner_(owner), db_(0),
      stream_(make_stream(host->loop(), this, host->upstream_tls(), tcp_, tls_, node->host())),
      out_(stream_->out()) {
  const Config& cfg = host->config();
  up_deadline_ms_ = host->now() + static_cast<uint64_t>(cfg.upstream_timeout_ms);
  const std::string& user = node->own_auth() ? node->auth_user() : cfg.upstream_user;
  const std::string& password = node->own_auth() ? node->auth_password() : cfg.upstream_password;
  // The handshake goes first in the output, so whatever clients queue while we connect follows.
  if (!password.empty()) {
    std::string cmd;
    if (user.empty())
      cmd = fmt::format("*2\r\n$4\r\nAUTH\r\n${}\r\n{}\r\n", password.size(), password);
    else
      cmd = fmt::format("*3\r\n$4\r\nAUTH\r\n${}\r\n{}\r\n${}\r\n{}\r\n", user.size(), user,
                        password.size(), password);
    push_internal(cmd);
  }
  if (proto_ == 3) push_internal("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
  if (db != 0) select_db(db);
  // A Cluster replica's reads (Node::read_conn); answered +OK, or the connection fails as on
  // any refused handshake command. No other connection sends it: a master demoted by a
  // failover then answers -MOVED to the reads of its slots, not its own (behind) data.
  if (readonly_) push_internal("*1\r\n$8\r\nREADONLY\r\n");
  // Over TLS 1.3 the client's handshake completes before the server has checked respite's
  // certificate (its refusal is an alert after): the node is up only once it answered
  // something, else a refused certificate would reset the backoff on every attempt.
  if (tls_ && pending_.empty()) push_internal("*1\r\n$4\r\nPING\r\n");
}

void UpstreamConn::push_internal(std::string_view raw) {
  out_.append(raw);
  pending_.push_back({Pending::Kind::Internal, nullptr, 0, nullptr,
                      host_->now() + static_cast<uint64_t>(host_->config().upstream_timeout_ms)});
}

void UpstreamConn::select_db(int db) {
  std::string n = std::to_string(db);
  out_.append(fmt::format("*2\r\n$6\r\nSELECT\r\n${}\r\n{}\r\n", n.size(), n));
  pending_.push_back({Pending::Kind::Internal, nullptr, 0, nullptr,
                      host_->now() + static_cast<uint64_t>(host_->config().upstream_timeout_ms)});
  db_ = db;
}

void UpstreamConn::connect() {
  // A connect refused at once (no route, bad address) fails the connection now, so the caller
  // sees it closed and answers "reconnecting" rather than queueing on a dead connection.
  if (int rc = tcp_->connect(node_->addr()); rc != 0) fail(fmt::format("connect: {}", uv_strerror(rc)));
}

void UpstreamConn::on_stream_ready() {
  if (state_ == State::Closed) return;
  state_ = State::Ready;
  tcp_->set_options(30);  // keepalive: a peer gone without a reset is found out
  stream_->read_start(&in_);
  // The handshake: the internal requests queued first (AUTH, HELLO, a pinned connection's
  // SELECT); their replies are the first to come.
  while (handshake_left_ < pending_.size() &&
         pending_[handshake_left_].kind == Pending::Kind::Internal)
    handshake_left_++;
  if (handshake_left_ == 0) declare_up();
  mark_dirty();
}

// Up means the upstream took the handshake, not merely the TCP connection: one that accepts
// connections and refuses AUTH must leave the node backing off (Node::conn_gone), not
// reconnecting at once in a loop.
void UpstreamConn::declare_up() {
  connected_at_ms = host_->now();
  node_->conn_up(this);
}

void UpstreamConn::on_stream_error(const char* op, int status) {
  // A TLS failure says why (a refused certificate arrives as an alert after the handshake).
  if (tls_ && status == UV_EPROTO && !tls_->error().empty())
    fail(fmt::format("TLS {}: {}", op, tls_->error()));
  else fail(fmt::format("{}: {}", op, uv_strerror(status)));
}

void UpstreamConn::on_stream_eof() { fail("connection closed by upstream"); }

void UpstreamConn::on_stream_written() {
  // What was queued while the write was in flight goes now, unless the cork will write it this
  // turn in its place among the connections (Server::add_dirty's order).
  if (state_ != State::Closed && !dirty_) flush();
}

void UpstreamConn::forward(const Forwarded& r) {
  if (!owner_ && r.db != db_) select_db(r.db);
  out_.append(r.raw);
  if (r.seq != kStreamSeq) {
    r.client->ref();
    Pending& p = pending_.emplace_back();
    p.kind = Pending::Kind::Relay;
    p.client = r.client;
    p.seq = r.seq;
    p.sink = nullptr;
    p.deadline =
        r.answer_by ? host_->now() + static_cast<uint64_t>(host_->config().upstream_timeout_ms)
                    : 0;
    if (r.answer_by && r.answer_by < p.deadline) {
      p.answer_by = r.answer_by;
      answer_by_pending_++;
    }
    p.start_us = static_cast<uint64_t>(host_->micros());
    if (const resp::Frame* f = r.frame; f && f->argc() > 0) {
      std::string_view n = f->arg(0).substr(0, sizeof p.name);
      std::memcpy(p.name, n.data(), n.size());
      p.name_len = static_cast<uint8_t>(n.size());
      if (f->argc() > 1) {
        std::string_view a = f->arg(1).substr(0, sizeof p.arg);
        std::memcpy(p.arg, a.data(), a.size());
        p.arg_len = static_cast<uint8_t>(a.size());
      }
    }
    // (emplace_back value-initialised the rest: zeros, exec_db -1)
    p.write = r.write;
    p.db = r.db;
    if (r.after) {
      p.after = r.after;
      p.exec_db = r.exec_db;
      p.exec_pos = r.exec_pos;
      p.exec_gen = r.exec_gen;
    }
    p.redirects = r.redirects;
    p.asked = r.asked;
    if (r.keep_for_retry) {
      compact_arena(retry_arena_, retry_head_);
      p.kept = true;
      p.kept_len = static_cast<uint32_t>(r.raw.size());
      retry_arena_.append(r.raw);
    }
    node_->stats.requests++;
    node_->stats.inflight++;
  }
  mark_dirty();
}

namespace {
// ASKING's reply: +OK, or an error the retried request behind it will show for itself.
class IgnoreSink final : public ReplySink {
 public:
  void on_reply(std::string_view, bool) override {}
};
IgnoreSink ignore_sink;
}  // namespace

void UpstreamConn::asking(int db) { request(&ignore_sink, "*1\r\n$6\r\nASKING\r\n", db); }

// The kept bytes of `p`, consumed from the arena (valid until the next forward appends).
std::string_view UpstreamConn::take_kept(Pending& p) {
  if (!p.kept) return {};
  p.kept = false;
  std::string_view raw(retry_arena_.data() + retry_head_, p.kept_len);
  retry_head_ += p.kept_len;  // the arena is emptied at the next append (the view stays valid)
  return raw;
}

// A kept request answered -MOVED/-ASK: handed to the host to send again. True: it took it (the
// client's slot is answered by the retry).
bool UpstreamConn::try_redirect(Pending& p, std::string_view reply) {
  std::string_view kept = take_kept(p);
  if (kept.empty() || p.answered || p.client->closed() || p.after != 0 ||
      p.redirects >= kMaxRedirects)
    return false;
  bool ask = false;
  std::string_view slot, target;
  const bool again = reply.starts_with("-TRYAGAIN");
  if (again) target = node_->name();
  else if (!parse_redirect(reply, ask, slot, target)) return false;
  // The retry may land on this very connection: its bytes must not live in our arena then.
  std::string raw(kept);
  // A write's second invalidation goes with the retry, to run on the reply that applied it.
  WriteInvalidation* inv = p.inv;
  p.inv = nullptr;
  if (p.inv_key) {
    if (!inv) {
      inv = new WriteInvalidation;
      inv->db = p.inv_db;
    }
    inv->keys.emplace_back(p.inv_db, std::string(inv_arena_.data() + inv_head_, p.inv_key_len));
    reply_invalidation(p);  // consumes the arena key (an extra invalidation now is harmless)
  }
  // The client's deadline: answer_by when it came before the connection's, else the deadline
  // itself (0: untimed, a blocking command).
  Redirect r{p.client, p.seq, raw, p.db, proto_, p.answer_by ? p.answer_by : p.deadline,
             p.write, ask, slot, target, static_cast<uint8_t>(p.redirects + 1), inv, again,
             p.asked};
  if (!host_->redirect(r)) {
    if (inv) host_->invalidate_after_write(inv);
    return false;
  }
  node_->stats.redirects++;
  return true;
}

void UpstreamConn::probe_select(ReplySink* sink, int n) {
  resp::Writer w(out_, 2);
  w.command({"SELECT", std::to_string(n)});
  w.command({"SELECT", std::to_string(db_)});
  uint64_t deadline = host_->now() + static_cast<uint64_t>(host_->config().upstream_timeout_ms);
  for (int i = 0; i < 2; ++i) pending_.push_back({Pending::Kind::Sink, nullptr, 0, sink, deadline});
  mark_dirty();
}

void UpstreamConn::set_reply_invalidation(WriteInvalidation* inv) {
  // Attach to the Relay just pushed by forward().
  if (!pending_.empty() && pending_.back().kind == Pending::Kind::Relay && !pending_.back().inv)
    pending_.back().inv = inv;
  else
    host_->invalidate_after_write(inv);
}

void UpstreamConn::set_reply_invalidation_key(uint32_t db, std::string_view key,
                                              uint64_t flights_at) {
  if (pending_.empty() || pending_.back().kind != Pending::Kind::Relay || pending_.back().inv ||
      pending_.back().inv_key) {
    host_->invalidate_key_after_write(db, key, flights_at);
    return;
  }
  Pending& p = pending_.back();
  p.inv_key = true;
  p.inv_key_len = static_cast<uint32_t>(key.size());
  p.inv_db = db;
  p.inv_flights_at = flights_at;
  compact_arena(inv_arena_, inv_head_);
  inv_arena_.append(key);
}

// The second invalidation of a write whose reply arrived (or whose connection failed: the write
// may have been applied all the same).
void UpstreamConn::reply_invalidation(Pending& p) {
  if (p.inv) {
    host_->invalidate_after_write(p.inv);
    p.inv = nullptr;
  }
  if (p.inv_key) {
    std::string_view key(inv_arena_.data() + inv_head_, p.inv_key_len);
    host_->invalidate_key_after_write(p.inv_db, key, p.inv_flights_at);
    inv_head_ += p.inv_key_len;
    if (inv_head_ == inv_arena_.size()) {
      inv_arena_.clear();
      inv_head_ = 0;
    }
    p.inv_key = false;
  }
}

void UpstreamConn::request(ReplySink* sink, std::string_view raw, int db, size_t nreplies) {
  if (!owner_ && db != db_) select_db(db);
  out_.append(raw);
  uint64_t deadline = host_->now() + static_cast<uint64_t>(host_->config().upstream_timeout_ms);
  for (size_t i = 0; i < nreplies; ++i)
    pending_.push_back({Pending::Kind::Sink, nullptr, 0, sink, deadline});
  mark_dirty();
}

void UpstreamConn::encode_command(std::string& out, const resp::Frame& f) {
  resp::Writer(out, 2).command(f);
}

void UpstreamConn::list_dirty() {
  const bool listed = dirty_;
  dirty_ = true;
  host_->add_dirty(this, listed);
}

void UpstreamConn::flush() {
  dirty_ = false;
  if (state_ != State::Ready) return;
  if (int rc = stream_->flush(); rc != 0) fail(fmt::format("write: {}", uv_strerror(rc)));
}

void UpstreamConn::on_stream_data() {
  UpstreamConn* u = this;
  if (u->state_ == State::Closed) return;
  u->host_->tick_micros();  // replies below land fills and time round trips with it
  while (u->state_ != State::Closed && !u->in_.empty()) {
    std::string_view buf = u->in_.readable();
    resp::ScanResult r = u->scanner_.scan(buf);
    if (r.status == resp::ScanResult::Status::NeedMore) break;
    if (r.status == resp::ScanResult::Status::Error) {
      u->fail("protocol error in upstream reply");
      return;
    }
    std::string_view reply = buf.substr(0, r.consumed);
    // Push messages (RESP3 pub/sub, invalidations) are out of band: never the answer to the
    // request at the front. On the invalidation link (RESP2, subscribed) a published message
    // is an array too: it is recognised by its "message" kind, so a PING sent there is never
    // answered by an invalidation.
    bool out_of_band = r.is_push || u->pending_.empty() ||
                       (u->stream_sink && reply.starts_with("*3\r\n$7\r\nmessage\r\n"));
    if (!out_of_band) {
      Pending p = u->pending_.front();
      u->pending_.pop_front();
      u->deliver(p, reply);
    } else if (u->owner_) {
      u->owner_->stream(reply);
    } else if (u->stream_sink) {
      u->stream_sink->on_reply(reply, false);
    } else {
      // A shared connection answers exactly one reply per request. One more (a command whose
      // reply count is not one got here) or a push would be handed to the next client's
      // request: the connection goes instead, and its requests fail.
      u->host_->stats().upstream_protocol_violations++;
      log(LogLevel::Warning,
          "upstream connection (shared): a {} nobody was waiting for; closing it and failing its "
          "{} pending requests",
          r.is_push ? "push message" : "reply", u->pending_.size());
      u->fail("protocol violation: unexpected reply");
      return;
    }
    u->in_.consume(r.consumed);
  }
  if (u->in_.empty()) u->in_.shrink_if_idle(1 << 20);
  if (u->retiring_ && u->pending_.empty() && u->state_ != State::Closed) u->close();
}

void UpstreamConn::retire() {
  retiring_ = true;
  if (pending_.empty()) close();
}

void UpstreamConn::deliver(Pending& p, std::string_view reply) {
  switch (p.kind) {
    case Pending::Kind::Relay:
      node_->stats.inflight--;
      if (p.kept) {
        if (reply.size() > 4 && reply[0] == '-' && try_redirect(p, reply)) {
          // Sent again: the retry's reply answers the slot (and counts the client's in-flight).
          if (p.answer_by && !p.answered) answer_by_pending_--;
          p.client->unref();
          break;
        }
        take_kept(p);
      }
      // A read a Cluster replica answered itself (not a redirect to its master).
      if (readonly_ && !(reply.starts_with("-MOVED") || reply.starts_with("-ASK") ||
                         reply.starts_with("-TRYAGAIN")))
        host_->stats().replica_reads++;
      reply_invalidation(p);
      if (reply.size() > 9 && reply[0] == '-' && reply.substr(1, 8) == "READONLY")
        host_->upstream_readonly(node_);
      host_->record_round_trip(static_cast<uint64_t>(host_->micros()) - p.start_us, p.client,
                                 {p.name, p.name_len}, {p.arg, p.arg_len});
      if (p.answer_by && !p.answered) answer_by_pending_--;
      if (p.answered && timed_out_ > 0) timed_out_--;
      // Even when answered by its timeout: the transaction ran, and moved the client.
      if (p.after & kAfterExec) p.client->on_exec_reply(reply, p.exec_pos, p.exec_db, p.exec_gen);
      if (!p.answered) {  // else: answered with its timeout
        if (p.after & kAfterExecAbort)
          p.client->complete(p.seq, "-EXECABORT Transaction discarded because of previous errors.\r\n");
        else if ((p.after & kAfterBarrier) && !p.client->closed())
          host_->tracking_barrier(p.client, p.seq, reply);
        else
          p.client->complete(p.seq, reply);
      }
      p.client->on_forwarded_done(this);
      p.client->unref();
      break;
    case Pending::Kind::Internal:
      if (!reply.empty() && reply[0] == '-') {
        std::string_view msg = reply.substr(1, reply.find('\r') - 1);
        log(LogLevel::Warning, "upstream refused a handshake command: {}", msg);
        fail(fmt::format("handshake: {}", msg));
      } else if (handshake_left_ > 0 && --handshake_left_ == 0) {
        declare_up();
      }
      break;
    case Pending::Kind::Sink:
      if (p.answered) {  // answered by its timeout: the late reply is dropped
        if (timed_out_ > 0) timed_out_--;
      } else {
        p.sink->on_reply(reply, false);
      }
      break;
  }
}

std::string upstream_error(std::string_view why) {
  return fmt::format("-ERR upstream unavailable ({})\r\n", why);
}

std::string timeout_reason(int timeout_ms) {
  return fmt::format("timeout: no reply within {} ms", timeout_ms);
}

void UpstreamConn::check_timeout(uint64_t now) {
  if (state_ == State::Closed) return;
  if (connected_at_ms == 0 && now > up_deadline_ms_) {  // see up_deadline_ms_
    host_->stats().upstream_timeouts++;
    fail(fmt::format("timeout: not up within {} ms ({})", host_->config().upstream_timeout_ms,
                     state_ == State::Connecting ? "connecting" : "handshake"));
    return;
  }
  if (pending_.empty()) return;
  // A slow request (a long script, KEYS, DEBUG SLEEP) delays only the requests behind it: each
  // one, a client's or respite's own (a cache fetch, a poll), is answered with a timeout error
  // at its own deadline, and the connection stays, so the late replies are consumed in order
  // and dropped, and whatever follows is answered normally. A silent upstream is not a dead
  // one (a script keeps Redis from answering anything until it ends); a dead peer shows as a
  // reset or EOF, or to TCP keepalive. Only a connection holding more than kMaxTimedOut
  // requests answered early and not yet replied to goes (its queue must not grow for ever).
  if (timed_out_ > kMaxTimedOut) {
    host_->stats().upstream_timeouts++;
    fail(timeout_reason(host_->config().upstream_timeout_ms));
    return;
  }
  std::string why;  // made on first use
  for (size_t i = 0; i < pending_.size() && state_ != State::Closed; ++i) {
    Pending& q = pending_[i];
    // Internal requests (handshake, SELECT) answer nobody; blocking commands wait for ever.
    if (q.answered || q.deadline == 0 || q.kind == Pending::Kind::Internal) continue;
    uint64_t due = q.kind == Pending::Kind::Relay && q.answer_by ? q.answer_by : q.deadline;
    if (now <= due) {
      // Later requests were sent later, so they are not due either (unless held ones wait).
      if (answer_by_pending_ == 0) break;
      continue;
    }
    if (q.kind == Pending::Kind::Relay && (readonly_ || node_->role == Node::Role::Replica)) {
      // A replica's connection carries reads only, and a client whose read is out on it holds
      // its later requests until every reply is in (forward.cc): kept open, a hung replica
      // (stopped, paused) would hold that client past any timeout. It goes instead, and its
      // reads are answered now (errors, or sent to the master: fail()).
      host_->stats().upstream_timeouts++;
      fail(timeout_reason(host_->config().upstream_timeout_ms));
      return;
    }
    q.answered = true;
    timed_out_++;
    if (q.answer_by) answer_by_pending_--;
    host_->stats().upstream_timeouts++;
    if (why.empty()) why = timeout_reason(host_->config().upstream_timeout_ms);
    // The callbacks below may close this connection (a client at its output limit closes its
    // pinned one): nothing of `q` is used after them, and the loop re-checks the state.
    if (q.kind == Pending::Kind::Relay) {
      Requester* c = q.client;
      uint64_t seq = q.seq;
      c->complete(seq, upstream_error(q.write ? why + "; the command may still be applied" : why));
    } else if (q.kind == Pending::Kind::Sink) {
      q.sink->on_reply(why, true);
    }
  }
}

void UpstreamConn::fail(std::string_view why) {
  if (state_ == State::Closed) return;
  bool was_ready = state_ == State::Ready;
  state_ = State::Closed;
  if (!closing_on_purpose_) {
    host_->stats().upstream_errors++;
    log(was_ready ? LogLevel::Warning : LogLevel::Verbose, "upstream connection {}: {}",
        owner_ ? "(pinned)" : "(shared)", why);
  }
  std::string err = upstream_error(why);
  RingQueue<Pending> pending;
  pending.swap(pending_);
  answer_by_pending_ = 0;
  out_.clear();
  for (size_t i = 0; i < pending.size(); ++i) {
    Pending& p = pending[i];
    switch (p.kind) {
      case Pending::Kind::Relay:
        node_->stats.inflight--;
        if (p.kept && retry_lost_read(p)) {
          p.client->unref();  // the retry answers the client's slot
          break;
        }
        node_->stats.errors++;
        // The write may have been applied even though its reply is lost.
        reply_invalidation(p);
        if (!p.answered)
          p.client->complete(p.seq, p.write && was_ready ? upstream_error(std::string(why) +
                                                             "; the command may have been applied")
                                            : err);
        p.client->on_forwarded_done(this);
        p.client->unref();
        break;
      case Pending::Kind::Sink:
        if (!p.answered) p.sink->on_reply(why, true);
        break;
      default:
        break;
    }
  }
  retry_arena_.clear();  // what was kept and not sent again failed above
  retry_head_ = 0;
  close();
}

// A read lost with a Cluster replica's connection (the replica died, or was cut off) never ran
// anywhere that matters: its master answers it instead of the client getting an error.
bool UpstreamConn::retry_lost_read(Pending& p) {
  if (!readonly_) return false;  // (before the copy: a master's connection retries nothing)
  std::string raw(take_kept(p));  // the arena goes when fail() is done
  if (p.write || p.answered || raw.empty() ||
      p.client->closed() || p.after != 0 || p.inv || p.inv_key || p.redirects >= kMaxRedirects)
    return false;
  Redirect r{p.client, p.seq, raw, p.db, proto_, p.answer_by ? p.answer_by : p.deadline,
             false, false, {}, {}, static_cast<uint8_t>(p.redirects + 1), nullptr, false,
             false, node_};
  return host_->redirect(r);
}

void UpstreamConn::close() {
  if (state_ != State::Closed && !pending_.empty()) {
    // Closed on purpose (its client left) with replies still owed: those clients get errors.
    closing_on_purpose_ = true;
    fail("closed");
    return;
  }
  // close() can re-enter itself (failing the pending requests may release the pin, which
  // closes this connection): the first call does the work, exactly once.
  if (close_started_) return;
  close_started_ = true;
  state_ = State::Closed;
  if (owner_) {
    Requester* c = owner_;
    owner_ = nullptr;
    c->on_pinned_conn_closed(this);
  }
  host_->upstream_gone(this);
  node_->conn_gone(this);
  stream_->close();
}

void UpstreamConn::on_stream_closed() { delete this; }

}  // namespace respite
