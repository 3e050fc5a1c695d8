#include "tests/component/scripted_upstream.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "resp/reply_writer.h"

namespace component {

namespace {

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// `cmd` is one word or two ("CLIENT ID").
bool named(const Args& a, std::string_view cmd) {
  size_t sp = cmd.find(' ');
  if (sp == std::string_view::npos) return !a.empty() && ieq(a[0], cmd);
  return a.size() >= 2 && ieq(a[0], cmd.substr(0, sp)) && ieq(a[1], cmd.substr(sp + 1));
}

}  // namespace

std::string bulk(std::string_view s) {
  std::string out;
  resp::Writer(out, 2).bulk(s);
  return out;
}
std::string nil() { return "$-1\r\n"; }
std::string simple(std::string_view s) { return "+" + std::string(s) + "\r\n"; }
std::string error(std::string_view s) { return "-" + std::string(s) + "\r\n"; }
std::string integer(int64_t n) { return ":" + std::to_string(n) + "\r\n"; }
std::string array(std::initializer_list<std::string> items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (const std::string& i : items) out += i;
  return out;
}
std::string command(std::initializer_list<std::string_view> args) {
  std::string out;
  resp::Writer(out, 2).command(args);
  return out;
}
std::string push(std::initializer_list<std::string_view> bulks) {
  std::string out = ">" + std::to_string(bulks.size()) + "\r\n";
  for (std::string_view b : bulks) out += bulk(b);
  return out;
}

const char* role_name(Role r) {
  switch (r) {
    case Role::Shared: return "shared";
    case Role::Link: return "link";
    case Role::Fetch: return "fetch";
    case Role::Pinned: return "pinned";
    default: return "unknown";
  }
}

Action reply(std::string bytes) { return Action{Action::Kind::Reply, std::move(bytes)}; }
Action delayed(uint64_t ms, std::string bytes) {
  Action a{Action::Kind::Reply, std::move(bytes)};
  a.delay_ms = ms;
  return a;
}
Action out_of_order(std::string bytes) {
  Action a{Action::Kind::Reply, std::move(bytes)};
  a.out_of_order = true;
  return a;
}
Action hold(std::string bytes) { return Action{Action::Kind::Hold, std::move(bytes)}; }
Action never() { return Action{Action::Kind::Never, {}}; }
Action close_connection() { return Action{Action::Kind::Close, {}}; }

// ---- one accepted connection ----

Conn::Conn(ScriptedUpstream* up, uv_loop_t* loop, int id) : up_(up), loop_(loop), id_(id) {}

size_t Conn::count(std::string_view cmd) const {
  return static_cast<size_t>(
      std::count_if(received_.begin(), received_.end(), [&](const Args& a) { return named(a, cmd); }));
}

void Conn::accept_on(uv_stream_t* server) {
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  open_ = true;
  gone_ = false;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0 ||
      uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read) != 0)
    close_now();
}

void Conn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(h->data);
  *buf = uv_buf_init(c->read_buf_, sizeof c->read_buf_);
}

void Conn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (nread < 0) {
    c->eof_ = true;
    c->close_now();
    return;
  }
  if (c->closing_) return;
  // After close() requests are still read and recorded (as Redis reads what a client sent
  // before it is closed), but not answered.
  c->in_.append(buf->base, static_cast<size_t>(nread));
  while (!c->closing_ && !c->in_.empty()) {
    resp::Result r = c->parser_.parse(c->in_, c->frame_);
    if (r.status == resp::Status::NeedMore) break;
    if (r.status == resp::Status::Error) {
      c->close_now();
      return;
    }
    Args a;
    for (size_t i = 0; i < c->frame_.argc(); ++i) a.emplace_back(c->frame_.arg(i));
    c->in_.erase(0, r.consumed);
    if (!a.empty()) c->up_->handle(*c, std::move(a));
  }
}

void Conn::queue(Action a) {
  switch (a.kind) {
    case Action::Kind::Reply:
      if (a.out_of_order) return write(a.bytes);
      out_.push_back({a.kind, std::move(a.bytes), a.delay_ms == 0, next_out_++});
      if (a.delay_ms > 0) {
        auto* t = new DelayTimer{{}, this, out_.back().n};
        uv_timer_init(loop_, &t->timer);
        t->timer.data = t;
        uv_timer_start(&t->timer, on_delay, a.delay_ms, 0);
        timers_.push_back(t);
      }
      break;
    case Action::Kind::Hold:
    case Action::Kind::Never:
      out_.push_back({a.kind, std::move(a.bytes), false, next_out_++});
      break;
    case Action::Kind::Close:
      out_.push_back({a.kind, {}, true, next_out_++});
      break;
  }
  pump();
}

void Conn::queue_in_order(std::string bytes) {
  out_.push_back({Action::Kind::Reply, std::move(bytes), true, next_out_++});
  pump();
}

void Conn::on_delay(uv_timer_t* h) {
  auto* t = static_cast<DelayTimer*>(h->data);
  Conn* c = t->conn;
  c->timers_.erase(std::remove(c->timers_.begin(), c->timers_.end(), t), c->timers_.end());
  uv_close(reinterpret_cast<uv_handle_t*>(&t->timer),
           [](uv_handle_t* x) { delete static_cast<DelayTimer*>(x->data); });
  for (Out& o : c->out_)
    if (o.n == t->n) o.ready = true;
  c->pump();
}

void Conn::pump() {
  while (!out_.empty() && out_.front().ready && !close_requested_) {
    Out o = std::move(out_.front());
    out_.pop_front();
    if (o.kind == Action::Kind::Close) return close();
    write(o.bytes);
  }
}

void Conn::release() {
  for (Out& o : out_)
    if (o.kind == Action::Kind::Hold) o.ready = true;
  pump();
}

void Conn::send(std::string_view bytes) { write(bytes); }

void Conn::write(std::string_view bytes) {
  if (close_requested_ || !open_ || bytes.empty()) return;
  auto* w = new WriteReq{{}, std::string(bytes)};
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, on_write) != 0) {
    delete w;
    return;
  }
}

void Conn::on_write(uv_write_t* req, int) { delete static_cast<WriteReq*>(req->data); }

void Conn::close() {
  if (close_requested_) return;
  close_requested_ = true;
  // uv_shutdown waits for the writes queued before it, then sends FIN.
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t* r, int status) {
        if (status < 0 && status != UV_ECANCELED) static_cast<Conn*>(r->data)->close_now();
      }) != 0)
    close_now();
}

void Conn::close_now() {
  close_requested_ = true;
  for (DelayTimer* t : timers_)
    uv_close(reinterpret_cast<uv_handle_t*>(&t->timer),
             [](uv_handle_t* x) { delete static_cast<DelayTimer*>(x->data); });
  timers_.clear();
  if (closing_ || !open_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void Conn::on_close(uv_handle_t* h) { static_cast<Conn*>(h->data)->gone_ = true; }

// ---- the server ----

ScriptedUpstream::ScriptedUpstream(uv_loop_t* loop) : loop_(loop) {}

ScriptedUpstream::~ScriptedUpstream() = default;

int ScriptedUpstream::start() {
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listening_ = true;
  listener_gone_ = false;
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, on_connection) != 0)
    return -1;
  sockaddr_storage ss{};
  int len = sizeof ss;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return port_;
}

void ScriptedUpstream::on_connection(uv_stream_t* s, int status) {
  auto* up = static_cast<ScriptedUpstream*>(s->data);
  if (status < 0) return;
  up->conns_.push_back(std::make_unique<Conn>(up, up->loop_, up->next_id_++));
  up->conns_.back()->accept_on(s);
}

void ScriptedUpstream::on_listener_close(uv_handle_t* h) {
  static_cast<ScriptedUpstream*>(h->data)->listener_gone_ = true;
}

void ScriptedUpstream::stop() {
  if (listening_) {
    listening_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), on_listener_close);
  }
  for (auto& c : conns_) c->close_now();
}

bool ScriptedUpstream::all_closed() const {
  if (!listener_gone_) return false;
  for (const auto& c : conns_)
    if (c->open_ && !c->gone_) return false;
  return true;
}

void ScriptedUpstream::on(std::string cmd, Action a, int times, Role role) {
  on(std::move(cmd), [a](Conn&, const Args&) { return a; }, times, role);
}

void ScriptedUpstream::on(std::string cmd, Handler h, int times, Role role) {
  rules_.push_back({std::move(cmd), role, times, std::move(h)});
}

std::vector<Conn*> ScriptedUpstream::conns(Role r) const {
  std::vector<Conn*> out;
  for (const auto& c : conns_)
    if (c->role_ == r) out.push_back(c.get());
  return out;
}

Conn* ScriptedUpstream::last(Role r) const {
  auto v = conns(r);
  return v.empty() ? nullptr : v.back();
}

Conn* ScriptedUpstream::by_id(int id) const {
  for (const auto& c : conns_)
    if (c->id_ == id) return c.get();
  return nullptr;
}

size_t ScriptedUpstream::count(Role r, std::string_view cmd) const {
  size_t n = 0;
  for (Conn* c : conns(r)) n += c->count(cmd);
  return n;
}

void ScriptedUpstream::set(const std::string& key, std::string value, int db) {
  strings_[{db, key}] = std::move(value);
  written(key);
}

void ScriptedUpstream::classify(Conn& c, const Args& a) {
  if (c.role_ != Role::Unknown) return;
  if (c.client_id_first_) {
    bool link = (named(a, "INFO") && a.size() == 2 && ieq(a[1], "commandstats")) ||
                (named(a, "SUBSCRIBE") && a.size() == 2 && a[1] == "__redis__:invalidate");
    c.role_ = link ? Role::Link : Role::Pinned;
    return;
  }
  if (named(a, "AUTH") || named(a, "HELLO") || named(a, "SELECT")) return;
  if (named(a, "CLIENT TRACKING")) c.role_ = Role::Fetch;
  else if (named(a, "CLIENT ID")) c.client_id_first_ = true;
  else c.role_ = Role::Shared;
}

void ScriptedUpstream::handle(Conn& c, Args a) {
  c.received_.push_back(a);
  arrivals_.emplace_back(c.id_, a);
  classify(c, a);
  if (c.close_requested_) return;
  for (Rule& r : rules_) {
    if (r.times == 0 || (r.role != Role::Unknown && r.role != c.role_) || !named(a, r.cmd)) continue;
    if (r.times > 0) --r.times;
    c.queue(r.handler(c, a));
    return;
  }
  c.queue(default_action(c, a));
}

Action ScriptedUpstream::default_action(Conn& c, const Args& a) {
  if (c.in_multi_ && !named(a, "EXEC") && !named(a, "DISCARD") && !named(a, "MULTI") &&
      !named(a, "WATCH")) {
    c.queued_.push_back(a);
    return reply(simple("QUEUED"));
  }
  if (named(a, "EXEC")) {
    if (!c.in_multi_) return reply(error("ERR EXEC without MULTI"));
    c.in_multi_ = false;
    std::vector<Args> q;
    q.swap(c.queued_);
    std::string out = "*" + std::to_string(q.size()) + "\r\n";
    for (const Args& x : q) out += run_command(c, x).bytes;
    return reply(out);
  }
  if (named(a, "MULTI")) {
    if (c.in_multi_) return reply(error("ERR MULTI calls can not be nested"));
    c.in_multi_ = true;
    return reply(simple("OK"));
  }
  if (named(a, "DISCARD")) {
    if (!c.in_multi_) return reply(error("ERR DISCARD without MULTI"));
    c.in_multi_ = false;
    c.queued_.clear();
    return reply(simple("OK"));
  }
  return run_command(c, a);
}

Action ScriptedUpstream::run_command(Conn& c, const Args& a) {
  auto arg = [&](size_t i) -> const std::string& {
    static const std::string empty;
    return i < a.size() ? a[i] : empty;
  };
  auto kind_msg = [&](std::string_view kind, std::string_view ch, std::string item) {
    return (c.proto_ == 3 ? ">3\r\n" : "*3\r\n") + bulk(kind) + bulk(ch) + item;
  };
  if (named(a, "AUTH")) return reply(simple("OK"));
  if (named(a, "HELLO")) {
    if (arg(1) == "3") c.proto_ = 3;
    return reply("%3\r\n" + bulk("server") + bulk("redis") + bulk("version") + bulk("7.2.4") +
                 bulk("proto") + integer(c.proto_));
  }
  if (named(a, "SELECT")) {
    c.db_ = std::atoi(arg(1).c_str());
    return reply(simple("OK"));
  }
  if (named(a, "PING")) {
    if (!c.channels_.empty() && c.proto_ == 2)
      return reply("*2\r\n" + bulk("pong") + bulk(a.size() > 1 ? arg(1) : ""));
    return reply(a.size() > 1 ? bulk(arg(1)) : simple("PONG"));
  }
  if (named(a, "INFO")) {
    if (ieq(arg(1), "commandstats")) {
      std::string text = "# Commandstats\r\n";
      if (swapdb_calls > 0)
        text += "cmdstat_swapdb:calls=" + std::to_string(swapdb_calls) + ",usec=1,usec_per_call=1.00\r\n";
      return reply(bulk(text));
    }
    return reply(bulk("# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n"));
  }
  if (named(a, "CONFIG GET") && ieq(arg(2), "databases"))
    return reply("*2\r\n" + bulk("databases") + bulk("16"));
  if (named(a, "CLIENT ID")) return reply(integer(c.id_));
  if (named(a, "CLIENT TRACKING")) {
    for (size_t i = 3; i + 1 < a.size(); ++i)
      if (ieq(a[i], "redirect")) c.redirect_ = std::atoll(a[i + 1].c_str());
    return reply(simple("OK"));
  }
  if (named(a, "CLIENT")) return reply(simple("OK"));
  if (named(a, "SUBSCRIBE") || named(a, "UNSUBSCRIBE")) {
    bool sub = named(a, "SUBSCRIBE");
    std::string out;
    for (size_t i = 1; i < a.size(); ++i) {
      if (sub) c.channels_.insert(a[i]);
      else c.channels_.erase(a[i]);
      out += kind_msg(sub ? "subscribe" : "unsubscribe", a[i], integer(static_cast<int64_t>(c.channels_.size())));
    }
    return reply(out);
  }
  if (named(a, "PUBLISH")) {
    int64_t n = 0;
    for (auto& other : conns_) {
      Conn& o = *other;
      if (o.close_requested_ || !o.channels_.count(arg(1))) continue;
      o.queue_in_order((o.proto_ == 3 ? ">3\r\n" : "*3\r\n") + bulk("message") + bulk(arg(1)) + bulk(arg(2)));
      ++n;
    }
    return reply(integer(n));
  }
  if (named(a, "GET")) {
    if (c.redirect_ >= 0) tracked_[arg(1)].insert(c.redirect_);
    auto it = strings_.find({c.db_, arg(1)});
    return reply(it == strings_.end() ? nil() : bulk(it->second));
  }
  if (named(a, "PTTL")) return reply(integer(strings_.count({c.db_, arg(1)}) ? -1 : -2));
  if (named(a, "SET")) {
    strings_[{c.db_, arg(1)}] = arg(2);
    written(arg(1));
    return reply(simple("OK"));
  }
  if (named(a, "DEL")) {
    int64_t n = 0;
    for (size_t i = 1; i < a.size(); ++i) {
      n += static_cast<int64_t>(strings_.erase({c.db_, a[i]}) + hashes_.erase({c.db_, a[i]}));
      written(a[i]);
    }
    return reply(integer(n));
  }
  if (named(a, "HSET")) {
    int64_t n = 0;
    auto& h = hashes_[{c.db_, arg(1)}];
    for (size_t i = 2; i + 1 < a.size(); i += 2) n += h.insert_or_assign(a[i], a[i + 1]).second ? 1 : 0;
    written(arg(1));
    return reply(integer(n));
  }
  if (named(a, "HGET")) {
    auto it = hashes_.find({c.db_, arg(1)});
    if (it == hashes_.end() || !it->second.count(arg(2))) return reply(nil());
    return reply(bulk(it->second[arg(2)]));
  }
  return reply(error("ERR unknown command '" + arg(0) + "' (scripted upstream)"));
}

void ScriptedUpstream::written(const std::string& key) {
  auto it = tracked_.find(key);
  if (it == tracked_.end()) return;
  std::set<int64_t> ids = std::move(it->second);
  tracked_.erase(it);
  if (!invalidations) return;
  for (int64_t id : ids) {
    Conn* link = by_id(static_cast<int>(id));
    if (!link || link->close_requested_ || !link->channels_.count("__redis__:invalidate")) continue;
    link->queue_in_order("*3\r\n" + bulk("message") + bulk("__redis__:invalidate") + "*1\r\n" + bulk(key));
  }
}

}  // namespace component
