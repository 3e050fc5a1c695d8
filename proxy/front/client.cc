// Client connections: read, parse, hand each request to dispatch, write replies in order.
#include <algorithm>
#include <cassert>

#include "proxy/ops/log.h"
#include "proxy/front/client.h"

#include "proxy/front/server.h"
#include "proxy/net/tls_stream.h"
#include "resp/reply_view.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {
constexpr size_t kKeepOutput = 1 << 20;  // output capacity kept once written
}  // namespace

namespace {
// The stream of a new client: TCP, or TLS over TCP; `tcp` and `tls` point into it.
Stream* make_stream(uv_loop_t* loop, Stream::Handler* h, std::shared_ptr<const TlsContext> ctx,
                    TcpStream*& tcp, TlsStream*& tls) {
  if (!ctx) return tcp = new TcpStream(loop, h, kKeepOutput);
  tls = new TlsStream(loop, h, kKeepOutput, std::move(ctx));
  tcp = &tls->tcp();
  return tls;
}
}  // namespace

ClientConn::ClientConn(Server* server, uint64_t id_, std::shared_ptr<const TlsContext> tls)
    : server_(server),
      stream_(make_stream(server->loop(), this, std::move(tls), tcp_, tls_)),
      out_(stream_->out()) {
  id = id_;
  resp::Limits lim;
  lim.max_bulk = static_cast<int64_t>(server->config().proto_max_bulk_len);
  const Acl& acl = server->shared()->acl;
  lim.unauthenticated = acl.auth_required();
  parser_.set_limits(lim);
  authenticated = !acl.auth_required();
  set_user(&acl.default_user());
  created_ms = last_cmd_ms = server->now();
}

void ClientConn::start() {
  tcp_->set_options(0);
  if (!stream_->read_start(&in_)) close();
}

bool ClientConn::handshaking() const { return tls_ && !tls_->established(); }

bool ClientConn::read_more() { return !closed() && stream_->read_start(&in_); }

void ClientConn::on_stream_error(const char* op, int) {
  if (tls_ && std::string_view(op) == "handshake") {
    server_->stats().tls_handshake_errors++;
    log(LogLevel::Verbose, "TLS handshake with {} failed: {}", peer, tls_->error());
  }
  close();
}

void ClientConn::on_stream_eof() {
  // A pinned client's state (a blocking command, a subscription, a transaction) ends with its
  // connection, as in Redis, even while its input is held back: a departed client's BLPOP
  // must be cancelled upstream before anything more is popped for it.
  if (pinned) {
    close();
    return;
  }
  // Half-closed: answer what was sent, then close (the client may still be reading).
  eof_ = true;
  on_stream_data();
}

void ClientConn::on_stream_data() {
  ClientConn* c = this;
  // Commands run in the loop's check phase, after every socket that was readable in this turn
  // has been read: an invalidation (or the loss of the invalidation link) that arrived
  // together with a client's GET is applied before the GET is answered.
  if (!c->input_queued_) {
    c->input_queued_ = true;
    c->ref();
    c->server_->add_input(c);
  }
}

void ClientConn::consume_input(size_t n) {
  in_.consume(n);
  held_bytes_ = held_bytes_ > n ? held_bytes_ - n : 0;
}

void ClientConn::run_queued_input() {
  input_queued_ = false;
  process_input();
}

void ClientConn::process_input() {
  ref();  // dispatch may close us; stay alive until the loop below is done
  // Fairness: at most kCommandsPerTurn commands per client per loop turn (about what Redis runs
  // from one 16 KB read), and no more than owed_limit() replies owed at once, so one client
  // flooding pipelined requests cannot starve the others or pile up replies upstream.
  size_t budget = kCommandsPerTurn;
  bool need_more = false;  // the buffer ends in an incomplete request: keep reading
  while (!closed() && !stalled_ && !hold_for_stream_ && !close_when_flushed_ && !in_.empty()) {
    if (budget-- == 0 || slots_.size() >= owed_limit()) {
      if (slots_.size() >= owed_limit()) {
        // Stop reading too: a client that sends without reading must not grow our input.
        owed_full_ = true;
        stream_->read_stop();
      } else {
        server_->defer_input(this);
      }
      break;
    }
    std::string_view buf = in_.readable();
    resp::Result r = parser_.parse(buf, frame_);
    if (r.status == resp::Status::NeedMore) {
      need_more = true;
      // Never-authenticated clients: 1 MB of query buffer at most, as Redis.
      uint64_t qlimit = ever_authenticated || authenticated
                            ? server_->config().client_query_buffer_limit
                            : std::min<uint64_t>(server_->config().client_query_buffer_limit, 1 << 20);
      if (in_.size() > qlimit) {
        log(LogLevel::Warning, "closing client id={}: query buffer over {} bytes", id,
            server_->config().client_query_buffer_limit);
        close();
      }
      break;
    }
    if (r.status == resp::Status::Error) {
      immediate_reply() += resp::error_text(r.error, r.bad);
      in_.consume(in_.size());
      held_bytes_ = 0;
      close_after_flush();
      break;
    }
    if (r.consumed > server_->config().client_query_buffer_limit) {
      // As Redis: one request larger than the query buffer limit closes the client.
      log(LogLevel::Warning, "closing client id={} addr={}: query buffer over {} bytes", id, peer,
          server_->config().client_query_buffer_limit);
      close();
      break;
    }
    if (frame_.argc() == 0) {
      consume_input(r.consumed);
      continue;
    }
    last_cmd_ms = server_->now();
    server_->dispatch().dispatch(this, frame_);
    account_last_slot();
    if (enforce_output_limit()) break;
    if (stalled_) break;  // the request stays in the buffer and is dispatched again on resume
    consume_input(r.consumed);
  }
  if (in_.empty()) in_.shrink_if_idle();
  // Input backpressure: with this much unprocessed input, stop reading until it is worked off.
  if (!closed() && !eof_ && !close_when_flushed_) {
    if (stream_->reading() && !need_more && in_.size() > kInputHighWater) {
      stream_->read_stop();
    } else if (!stream_->reading() && !owed_full_ && in_.size() <= kInputHighWater / 2) {
      read_more();
    }
  }
  // Closed after the EOF only once the input is used up (or ends in a request that will never
  // be completed): a loop that stopped on the turn's budget, the owed-replies limit or a held
  // stream resumes later, and every complete request the client sent before its FIN is answered.
  if (eof_ && !stalled_ && !closed() && (in_.empty() || need_more)) {
    // A pinned client's state (a blocking command, a subscription, a transaction) ends with its
    // connection, as in Redis: drop it now rather than wait for a reply that may never come.
    if (pinned) close();
    else close_after_flush();
  }
  unref();
}

void ClientConn::stall() {
  if (!stalled_ && held_bytes_ == 0) held_since_ms_ = server_->now();
  stalled_ = true;
}

uint64_t ClientConn::arrived_ms() const {
  return held_bytes_ ? held_since_ms_ : server_->now();
}

void ClientConn::resume() {
  if (!stalled_ || closed()) return;
  stalled_ = false;
  // What was read by now waited behind the stall. A new stall inside that input keeps the
  // first one's start for it, but does not extend it to input read after this point (whose
  // own wait then counts from its dispatch): the held range only shrinks, so an old start
  // can never date a client's later pipelining.
  if (held_bytes_ == 0) held_bytes_ = in_.size();
  process_input();
}

void ClientConn::set_user(const AclUser* u) {
  user = u;
  acl_unrestricted = u->unrestricted();
}

void ClientConn::set_authenticated(bool yes) {
  authenticated = yes;
  if (yes) ever_authenticated = true;
  resp::Limits lim = parser_.limits();
  lim.unauthenticated = !yes;
  parser_.set_limits(lim);
}

// Consumes a one-shot CLIENT REPLY SKIP; true when this reply must not be written.
static bool take_drop(ClientConn::ReplyMode& m) {
  if (m == ClientConn::ReplyMode::On) return false;
  if (m == ClientConn::ReplyMode::Skip) m = ClientConn::ReplyMode::On;
  return true;
}

uint64_t ClientConn::reserve_slot() {
  slots_.emplace_back();
  slots_.back().drop = take_drop(reply_mode);
  return next_seq_++;
}

void ClientConn::complete(uint64_t seq, std::string_view reply) {
  if (closed() || seq < head_seq_) return;
  size_t idx = seq - head_seq_;
  if (idx >= slots_.size()) return;
  if (idx == 0) {
    if (!slots_.front().drop) {
      out_.append(reply);
      note_reply(reply.size());
    }
    slots_.pop_front();
    ++head_seq_;
    drain_ready();  // also lets a client held back by owed_limit() go on
    mark_dirty();
  } else {
    Slot& s = slots_[idx];
    if (!s.drop) {
      s.data.assign(reply);
      s.counted = reply.size();
      slot_bytes_ += reply.size();
      note_reply(reply.size());
    }
    s.ready = true;
  }
  // Checked as each reply lands, so a client owed thousands of copies of one big value is
  // closed at the limit instead of after receiving them all.
  enforce_output_limit();
}

bool ClientConn::enforce_output_limit() {
  if (closed()) return true;
  const Config& cfg = server_->config();
  // As Redis (CVE-2025-21605): a client that never authenticated gets 1 KB of unread replies,
  // so one that sends commands (and wrong passwords) without reading cannot grow our memory.
  constexpr size_t kUnauthenticatedOutput = 1024;
  if (!ever_authenticated && !authenticated &&
      stream_->unwritten() + slot_bytes_ > kUnauthenticatedOutput) {
    log(LogLevel::Verbose, "closing client id={} addr={}: unauthenticated, output over {} bytes",
        id, peer, kUnauthenticatedOutput);
    close();
    return true;
  }
  uint64_t hard = cfg.client_output_buffer_limit, soft = cfg.client_output_buffer_soft;
  if (!hard && !soft) return false;
  size_t total = stream_->unwritten() + slot_bytes_;
  size_t counted = total > largest_reply_ ? total - largest_reply_ : 0;
  bool over = hard && counted > hard;
  if (!over && soft && counted > soft) {
    uint64_t now = server_->now();
    if (soft_limit_since_ == 0) soft_limit_since_ = now;
    else over = now - soft_limit_since_ >= cfg.client_output_buffer_soft_seconds * 1000;
  } else if (!over) {
    soft_limit_since_ = 0;
  }
  if (!over) return false;
  log(LogLevel::Warning,
      "closing client id={} addr={}: output buffer over client-output-buffer-limit ({} bytes "
      "counted, the largest reply's {} not)",
      id, peer, counted, largest_reply_);
  close();
  return true;
}

void ClientConn::drain_ready() {
  while (!slots_.empty() && slots_.front().ready) {
    Slot& s = slots_.front();
    if (!s.drop) out_.append(s.data);
    slot_bytes_ -= s.counted;
    slots_.pop_front();
    ++head_seq_;
  }
  if (owed_full_ && slots_.size() < owed_limit() / 2 && !closed()) {
    owed_full_ = false;
    if (!stream_->reading() && !eof_ && !close_when_flushed_) read_more();
    server_->defer_input(this);
  }
}

std::string& ClientConn::immediate_reply() {
  if (take_drop(reply_mode)) {
    discard_.clear();
    return discard_;
  }
  return queued_reply();
}

std::string& ClientConn::queued_reply() {
  if (slots_.empty()) {
    mark_dirty();
    return out_;
  }
  slots_.emplace_back();
  slots_.back().ready = true;
  ++next_seq_;
  return slots_.back().data;
}

void ClientConn::stream(std::string_view message) {
  // Anything carrying our token is ours: the answer the front local reply waits for, a late
  // answer to one that expired, or the barrier PING in a MONITOR client's own feed.
  if (!stream_token_.empty() && message.find(stream_token_) != std::string_view::npos) {
    if (!stream_locals_.empty()) stream_token_answer(message);
    return;
  }
  if (close_when_flushed_) return;  // after QUIT: nothing more, as Redis closes
  // CLIENT REPLY OFF/SKIP silences replies, but not pub/sub notifications and messages, which
  // Redis 7 pushes whatever the client's reply mode.
  if (reply_mode != ReplyMode::On && !is_pubsub_push(message)) return;
  std::string& into = queued_reply();  // the reply mode was applied above
  into.append(message);
  if (&into == &out_) note_reply(message.size());
  else account_last_slot();
  enforce_output_limit();
}

bool ClientConn::is_pubsub_push(std::string_view m) {
  if (!m.empty() && m[0] == '>') return true;  // RESP3 pushes
  resp::ReplyView view(m);
  resp::ReplyItem it;
  if (!view.next(it) || it.type != '*' || it.n < 3 || !view.next(it) || !it.is_string())
    return false;
  static constexpr std::string_view kKinds[] = {
      "message", "pmessage", "smessage", "subscribe", "psubscribe", "ssubscribe",
      "unsubscribe", "punsubscribe", "sunsubscribe"};
  for (std::string_view k : kKinds)
    if (it.str == k) return true;
  return false;
}

void ClientConn::stream_local(std::string reply, StreamAfter then) {
  if (!pinned || pinned->closed()) {
    // Nothing owed can still come: write it now.
    stream_locals_.push_back({std::move(reply), then, 0});
    finish_stream_local();
    return;
  }
  if (stream_token_.empty()) {
    static const char hex[] = "0123456789abcdef";
    uint64_t a = uv_hrtime() ^ (id * 0x9e3779b97f4a7c15ull), b = a * 0xbf58476d1ce4e5b9ull + id;
    for (int i = 0; i < 16; ++i) {
      stream_token_.push_back(hex[(a >> (4 * i)) & 15]);
      stream_token_.push_back(hex[(b >> (4 * i)) & 15]);
    }
    stream_token_.insert(0, "respite-barrier-");
  }
  uint64_t n = ++stream_tokens_sent_;
  std::string ping;
  resp::Writer(ping, 2).command({"PING", stream_token_ + "-" + std::to_string(n)});
  Forwarded r;
  r.client = this;
  r.seq = kStreamSeq;
  r.raw = ping;
  r.db = db;
  pinned->forward(r);
  stream_locals_.push_back({std::move(reply), then,
                            server_->now() + static_cast<uint64_t>(server_->config().upstream_timeout_ms),
                            n});
  if (then != StreamAfter::None) hold_for_stream_ = true;  // what follows QUIT/RESET waits
}

bool ClientConn::stream_token_answer(std::string_view message) {
  // PING's answer in subscribed RESP2 is ["pong", token]; in RESP3 and under MONITOR the
  // token as a bulk. Compared whole: a MONITOR line quoting the PING never matches.
  std::string token = stream_token_ + "-" + std::to_string(stream_locals_.front().n);
  std::string a, b;
  resp::Writer(a, 2).bulk(token);
  resp::Writer wb(b, 2);
  wb.array(2);
  wb.bulk("pong");
  wb.bulk(token);
  if (message != a && message != b) return false;
  finish_stream_local();
  return true;
}

void ClientConn::stream_token_expired(uint64_t now) {
  while (!stream_locals_.empty() && !closed() && stream_locals_.front().deadline != 0 &&
         now > stream_locals_.front().deadline)
    finish_stream_local();
}

void ClientConn::finish_stream_local() {
  if (stream_locals_.empty() || closed()) return;
  StreamLocal l = std::move(stream_locals_.front());
  stream_locals_.pop_front();
  switch (l.then) {
    case StreamAfter::None:
      immediate_reply().append(l.reply);
      break;
    case StreamAfter::Quit:
      immediate_reply().append(l.reply);
      close_after_flush();
      break;
    case StreamAfter::Reset:
      server_->dispatch().reset_client(this);
      immediate_reply().append(l.reply);
      break;
  }
  if (hold_for_stream_ && !closed()) {
    hold_for_stream_ = false;
    for (const StreamLocal& s : stream_locals_)
      if (s.then != StreamAfter::None) hold_for_stream_ = true;
    if (!hold_for_stream_) server_->defer_input(this);  // go on with what was read meanwhile
  }
}

void ClientConn::on_forwarded_done(UpstreamConn* conn) {
  // Counts requests, not connections: one sent again after MOVED/ASK finishes on another
  // connection than last_conn (the one the client's latest request went to).
  (void)conn;
  if (inflight > 0) --inflight;
  if (inflight == 0) {
    last_conn = nullptr;
    replica_read_out = false;
    if (stalled_ && !closed()) {
      ref();
      server_->add_resume(this);
    }
    maybe_release_pin();
  }
}

void ClientConn::maybe_release_pin() {
  if (!pinned || in_multi || watching || streaming || sticky_pin || inflight > 0) return;
  UpstreamConn* u = pinned;
  pinned = nullptr;
  u->close();
}

void ClientConn::mark_dirty() {
  if (dirty_ || closed()) return;
  dirty_ = true;
  ref();
  server_->add_dirty(this);
}

void ClientConn::flush() {
  if (enforce_output_limit()) return;
  if (!out_.empty() && !stream_->writing()) {
    if (stream_->flush() != 0) {
      close();
      return;
    }
    if (out_.empty() && !stream_->writing() && slot_bytes_ == 0) largest_reply_ = 0;
  }
  if (close_when_flushed_ && slots_.empty() && !stream_->writing() && out_.empty()) close();
}

void ClientConn::on_stream_written() {
  if (out_.empty() && slot_bytes_ == 0) largest_reply_ = 0;
  ref();  // flush() may close us
  flush();
  unref();
}

void ClientConn::close_after_flush() {
  close_when_flushed_ = true;
  stream_->read_stop();
  mark_dirty();
}

void ClientConn::close() {
  if (closing_ || closed_) return;
  closing_ = true;
  stream_->read_stop();
  slots_.clear();
  slot_bytes_ = 0;
  stream_locals_.clear();
  delete multi_writes;
  multi_writes = nullptr;
  if (pinned) {
    UpstreamConn* u = pinned;
    pinned = nullptr;
    u->close();
  }
  server_->client_closed(this);
  stream_->close();
}

void ClientConn::on_stream_closed() {
  closed_ = true;
  unref();  // may delete this (and the stream): nothing after
}

void ClientConn::on_pinned_conn_closed(UpstreamConn* conn) {
  if (pinned != conn) return;
  // The client's transaction or subscriptions lived on this connection: it is gone, so is the
  // client's state; close the client once what it is owed is written, as Redis would close it.
  pinned = nullptr;
  close_after_flush();
}

}  // namespace respite

namespace respite {

void ClientConn::on_exec_reply(std::string_view reply, uint32_t pos, int new_db, uint32_t gen) {
  // A committed transaction answers with an array of one reply per queued command; an aborted
  // or discarded one with an error or nil, and then its SELECT did not run.
  if (gen != db_gen || new_db < 0) return;
  resp::ReplyView view(reply);
  resp::ReplyItem it;
  if (!view.next(it) || it.null || it.type != '*' || pos >= static_cast<uint64_t>(it.n)) return;
  // Walk the top-level elements to `pos`, skipping nested ones by counting what is owed.
  for (uint32_t k = 0;; ++k) {
    resp::ReplyItem e;
    if (!view.next(e)) return;
    if (k == pos) {
      if (e.type == '+' && e.str == "OK") {
        db = new_db;
        ++db_gen;
      }
      return;
    }
    for (int64_t owed = e.is_aggregate() ? e.n : 0; owed > 0; --owed) {
      resp::ReplyItem ch;
      if (!view.next(ch)) return;
      if (ch.is_aggregate()) owed += ch.n;
    }
  }
}

}  // namespace respite

namespace respite {

void ClientConn::on_flight_done() {
  if (flights_waiting > 0) --flights_waiting;
  if (flights_waiting == 0 && stalled_ && inflight == 0 && !closed()) {
    ref();
    server_->add_resume(this);
  }
}

}  // namespace respite
