// The server: listener, the per-loop-turn cork that flushes every connection once, the timer that
// enforces upstream timeouts and reconnects with backoff, and orderly shutdown on SIGTERM/SIGINT.
#include "proxy/server.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "proxy/http/http_server.h"
#include "proxy/net/listener.h"
#include "proxy/ops/log.h"
#include "proxy/ops/text.h"
#include "resp/reply_view.h"

namespace respite {

uint64_t now_ms(uv_loop_t* loop) { return uv_now(loop); }

namespace {
constexpr uint64_t kTimerMs = 10;
constexpr uint64_t kMaxBackoffMs = 500;
constexpr uint64_t kShutdownGraceMs = 4000;

std::string peer_name(uv_tcp_t* t) {
  sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(t, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?:0";
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  }
  return fmt::format("{}:{}", ip, port);
}
}  // namespace

Server::Server(Config cfg, Shared* shared, int index)
    : cfg_(std::move(cfg)), shared_(shared), index_(index), cache_(shared->cache.get()) {
  databases_ = cfg_.databases;
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, on_async);  // before any other loop may post()
  async_.data = this;
}

void configure_cache_threads(cache::Settings& s, int threads) {
  // Several loops share the cache: shard it so loops rarely wait for one another.
  s.thread_safe = threads > 1;
  s.shards = 0;  // the cache picks: one, or its thread-safe default
}

Server::~Server() { uv_loop_close(&loop_); }

int Server::run() {
  if (int rc = start(); rc != 0) return rc;
  uv_run(&loop_, UV_RUN_DEFAULT);
  finish();
  return 0;
}

int Server::start() {
  signal(SIGPIPE, SIG_IGN);
  // Resolve the upstream once; reconnects reuse the address.
  uv_getaddrinfo_t gai;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(cfg_.upstream_port);
  int rc = uv_getaddrinfo(&loop_, &gai, nullptr, cfg_.upstream_host.c_str(), port.c_str(), &hints);
  if (rc != 0 || !gai.addrinfo) {
    log(LogLevel::Warning, "cannot resolve upstream {}: {}", cfg_.upstream, uv_strerror(rc));
    return 1;
  }
  std::memcpy(&upstream_addr_, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
  uv_freeaddrinfo(gai.addrinfo);

  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  if (cfg_.http_port > 0) http_ = std::make_unique<HttpServer>(this);
  if (open_listener() != 0 || (http_ && !http_->start())) {
    if (http_) http_->close();
    {
      std::lock_guard<std::mutex> lk(posted_mu_);
      async_closed_ = true;
    }
    for (Server* other : shared_->servers)
      if (other != this) other->post([other] { other->begin_shutdown(); });
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    return 1;
  }

  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  uv_check_init(&loop_, &cork_);
  cork_.data = this;
  uv_check_start(&cork_, on_check);
  uv_timer_init(&loop_, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, on_timer, kTimerMs, kTimerMs);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  sigterm_.data = sigint_.data = this;
  if (index_ == 0) {  // one loop takes the signals and tells the others
    uv_signal_start(&sigterm_, on_signal, SIGTERM);
    uv_signal_start(&sigint_, on_signal, SIGINT);
  }

  shared_conn(2, 0);  // connect eagerly so PROXY INFO and health reflect the upstream at once
  if (index_ == 0) {
    log(LogLevel::Notice, "respite {} listening on {}:{} ({} thread{}), upstream {}",
        RESPITE_VERSION, cfg_.bind, cfg_.port, cfg_.threads, cfg_.threads > 1 ? "s" : "",
        cfg_.upstream);
    for (const auto& line : describe_config(cfg_)) log(LogLevel::Notice, "config: {}", line);
    log(LogLevel::Notice, "Ready to accept connections");
  }
  return 0;
}

int Server::port() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

void Server::finish() {
  // Orderly teardown: every object frees itself in its close callback.
  if (http_) http_->close();
  while (!clients_.empty()) clients_.back()->close();
  for (auto& v : pool_)
    for (UpstreamConn*& u : v)
      if (u) u->close();
  while (!pinned_.empty()) pinned_.back()->close();
  if (fetch_) fetch_->close();
  while (!retired_.empty()) retired_.back()->close();
  if (link_) link_->close();
  {
    std::lock_guard<std::mutex> lk(posted_mu_);
    async_closed_ = true;
  }
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&cork_), reinterpret_cast<uv_handle_t*>(&timer_),
                         reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sigint_),
                         reinterpret_cast<uv_handle_t*>(&async_),
                         reinterpret_cast<uv_handle_t*>(&idle_)})
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (index_ == 0) log(LogLevel::Notice, "respite is now ready to exit, bye bye...");
}

int Server::open_listener() {
  return listen_tcp(&listener_, cfg_.bind, cfg_.port, cfg_.threads > 1, on_connection, "");
}

void Server::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(posted_mu_);
  if (async_closed_) return;  // this loop has ended
  posted_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Server::on_async(uv_async_t* h) {
  auto* srv = static_cast<Server*>(h->data);
  {
    std::lock_guard<std::mutex> lk(srv->posted_mu_);
    srv->posted_spare_.swap(srv->posted_);
  }
  for (auto& fn : srv->posted_spare_) fn();
  srv->posted_spare_.clear();
}

void Server::on_connection(uv_stream_t* s, int status) {
  auto* srv = static_cast<Server*>(s->data);
  if (status < 0) return;
  auto* c = new ClientConn(srv, srv->shared_->next_client_id.fetch_add(1));
  if (uv_accept(s, reinterpret_cast<uv_stream_t*>(c->handle())) != 0) {
    c->server_index = SIZE_MAX;
    uv_close(reinterpret_cast<uv_handle_t*>(c->handle()), ClientConn::on_close);
    return;
  }
  srv->stats_.total_connections_received++;
  c->server_index = srv->clients_.size();
  srv->clients_.push_back(c);
  c->peer = peer_name(c->handle());
  if (srv->shared_->clients.fetch_add(1) + 1 > srv->cfg_.maxclients) {
    srv->stats_.rejected_connections++;
    c->immediate_reply() += "-ERR max number of clients reached\r\n";
    c->close_after_flush();
    return;
  }
  c->start();
}

void Server::client_closed(ClientConn* c) {
  size_t i = c->server_index;
  if (i < clients_.size() && clients_[i] == c) {
    clients_[i] = clients_.back();
    clients_[i]->server_index = i;
    clients_.pop_back();
    shared_->clients.fetch_sub(1);
  }
  c->server_index = SIZE_MAX;
}

// The cork: runs once per loop turn after I/O. Clients held back by a barrier go first (they may
// queue upstream requests), then every upstream connection and every client is written once.
void Server::defer_input(ClientConn* c) {
  if (c->input_queued_) return;
  c->input_queued_ = true;
  c->ref();
  deferred_input_.push_back(c);
  uv_idle_start(&idle_, on_idle);
}

void Server::on_check(uv_check_t* h) {
  auto* srv = static_cast<Server*>(h->data);
  srv->tick_micros();
  // Input deferred in the previous turn goes first, after this turn's reads were queued.
  if (!srv->deferred_input_.empty()) {
    srv->input_clients_.insert(srv->input_clients_.end(), srv->deferred_input_.begin(),
                               srv->deferred_input_.end());
    srv->deferred_input_.clear();
    uv_idle_stop(&srv->idle_);
  }
  // The work lists are swapped with spares that keep their capacity: no allocation per turn.
  for (int round = 0; round < 64; ++round) {
    if (srv->input_clients_.empty() && srv->resume_clients_.empty() &&
        srv->dirty_upstreams_.empty() && srv->dirty_clients_.empty())
      break;
    srv->input_spare_.swap(srv->input_clients_);
    for (ClientConn* c : srv->input_spare_) {
      c->run_queued_input();
      c->unref();
    }
    srv->input_spare_.clear();
    srv->resume_spare_.swap(srv->resume_clients_);
    for (ClientConn* c : srv->resume_spare_) {
      c->resume();
      c->unref();
    }
    srv->resume_spare_.clear();
    srv->upstream_spare_.swap(srv->dirty_upstreams_);
    for (UpstreamConn* u : srv->upstream_spare_) u->flush();
    srv->upstream_spare_.clear();
    srv->client_spare_.swap(srv->dirty_clients_);
    for (ClientConn* c : srv->client_spare_) {
      c->dirty_ = false;
      c->flush();
      c->unref();
    }
    srv->client_spare_.clear();
  }
}

void Server::on_timer(uv_timer_t* h) {
  auto* srv = static_cast<Server*>(h->data);
  uint64_t now = srv->now();
  for (auto& v : srv->pool_)
    for (UpstreamConn* u : v)
      if (u) u->check_timeout(now);
  // check_timeout may close (and unlist) a pinned connection: iterate over a copy.
  std::vector<UpstreamConn*> pinned = srv->pinned_;
  for (UpstreamConn* u : pinned)
    if (!u->closed()) u->check_timeout(now);
  if (srv->fetch_) srv->fetch_->check_timeout(now);
  std::vector<UpstreamConn*> retired = srv->retired_;
  for (UpstreamConn* u : retired)
    if (!u->closed()) u->check_timeout(now);
  if (srv->link_) srv->link_->check_timeout(now);
  // Keep the RESP2 connections up (health), and RESP3 ones once a client has used them.
  if (!srv->shutting_down_) {
    for (int p = 0; p < 2; ++p) {
      auto& v = srv->pool_[p];
      for (size_t i = 0; i < v.size(); ++i)
        if (!v[i] && now >= srv->next_attempt_[p]) srv->shared_conn(p + 2, i);
    }
  }
  if (!srv->shutting_down_ && srv->cache_->enabled()) {
    if (!srv->link_ && now >= srv->next_link_attempt_ && srv->upstream_connected()) srv->start_link();
    srv->cache_->expire_step(srv->tick_micros(), 64);
  }
  if (now >= srv->next_swapdb_poll_ms_) {
    srv->next_swapdb_poll_ms_ = now + kSwapdbPollMs;
    if (!srv->shutting_down_ && srv->cache_->enabled() && srv->tracking_up_) srv->poll_swapdb();
    // Replies of streaming clients waiting for a token that never came (an error in its place).
    std::vector<ClientConn*> waiting;
    for (ClientConn* c : srv->clients_)
      if (c->stream_waiting()) waiting.push_back(c);
    for (ClientConn* c : waiting) c->stream_token_expired(now);
  }
  if (srv->cfg_.timeout > 0 && now >= srv->next_idle_check_ms_) {
    // Redis's `timeout`: idle clients go, but not subscribers or clients blocked upstream.
    srv->next_idle_check_ms_ = now + 1000;
    uint64_t limit = static_cast<uint64_t>(srv->cfg_.timeout) * 1000;
    std::vector<ClientConn*> idle;
    for (ClientConn* c : srv->clients_)
      if (now - c->last_cmd_ms > limit && !c->streaming && c->inflight == 0 && !c->pinned)
        idle.push_back(c);
    for (ClientConn* c : idle) {
      srv->stats_.idle_timeouts++;
      log(LogLevel::Verbose, "closing idle client id={} addr={}", c->id, c->peer);
      c->close();
    }
  }
  srv->pinned_count_.store(srv->pinned_.size(), std::memory_order_relaxed);
  srv->upstream_up_.store(srv->upstream_connected(), std::memory_order_relaxed);
  if (srv->shutting_down_) srv->maybe_finish_shutdown();
}

UpstreamConn* Server::shared_conn(int proto, uint64_t client_id) {
  auto& v = pool_[proto - 2];
  if (v.empty()) v.assign(static_cast<size_t>(cfg_.upstream_connections), nullptr);
  size_t idx = client_id % v.size();
  if (!v[idx]) {
    if (now() < next_attempt_[proto - 2] || shutting_down_) return nullptr;
    auto* u = new UpstreamConn(this, proto, nullptr, 0);
    v[idx] = u;
    stats_.upstream_connects++;
    u->connect();
  }
  return v[idx];
}

UpstreamConn* Server::open_pinned(ClientConn* c, int db) {
  auto* u = new UpstreamConn(this, c->proto, c, db < 0 ? c->db : db);
  pinned_.push_back(u);
  stats_.pinned_connections_opened++;
  learn_upstream_client_id(u);
  u->connect();
  if (u->closed()) return nullptr;
  return u;
}

void Server::upstream_up(UpstreamConn* u) {
  if (!u->owner()) backoff_ms_ = 0;
  if (!u->owner() && u != link_ && u != fetch_) ask_databases(u);
  if (!u->owner() && u != link_ && u != fetch_) read_upstream_version(u);
  upstream_up_.store(upstream_connected(), std::memory_order_relaxed);
}

void Server::upstream_gone(UpstreamConn* u) {
  dirty_upstreams_.erase(std::remove(dirty_upstreams_.begin(), dirty_upstreams_.end(), u),
                         dirty_upstreams_.end());
  if (u == link_) {
    link_ = nullptr;
    link_down("connection lost");
    return;
  }
  if (u == fetch_) {
    // Redis forgets what a connection tracked when it goes: entries it fetched would no longer
    // be invalidated, so they go too.
    fetch_ = nullptr;
    cache_->flush_all(cache::Source::kLocal);
    return;
  }
  retired_.erase(std::remove(retired_.begin(), retired_.end(), u), retired_.end());
  auto it = std::find(pinned_.begin(), pinned_.end(), u);
  if (it != pinned_.end()) {
    *it = pinned_.back();
    pinned_.pop_back();
    return;
  }
  for (int p = 0; p < 2; ++p) {
    for (UpstreamConn*& slot : pool_[p]) {
      if (slot == u) {
        slot = nullptr;
        // A connection that never became ready means the upstream is down: back off.
        if (u->connected_at_ms == 0) backoff_ms_ = std::min(kMaxBackoffMs, std::max<uint64_t>(50, backoff_ms_ * 2));
        next_attempt_[p] = now() + backoff_ms_;
      }
    }
  }
}

// SELECT is checked against the upstream's own number of databases, so a SELECT it would refuse
// never reaches a shared connection (where its failure would fail every client on it).
void Server::ask_databases(UpstreamConn* u) {
  if (!databases_sink_) {
    auto on_reply = [this](std::string_view reply, bool failed) {
      if (failed) return;
      resp::ReplyView view(reply);
      resp::ReplyItem it;
      bool name_seen = false;
      while (view.next(it)) {
        if (it.is_error()) {
          log(LogLevel::Verbose, "the upstream refuses CONFIG GET databases: SELECT accepts 0-{}",
              cfg_.databases - 1);
          return;
        }
        if (!it.is_string()) continue;
        if (name_seen) {
          long long n = 0;
          if (parse_ll(it.str, n) && n > 0 && n <= INT32_MAX) {
            databases_ = static_cast<int>(n);
            databases_known_ = true;
          }
          return;
        }
        name_seen = ieq(it.str, "databases");
      }
    };
    databases_sink_ = std::make_unique<FnSink<decltype(on_reply)>>(on_reply);
  }
  u->request(databases_sink_.get(), "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$9\r\ndatabases\r\n", 0);
}

bool Server::upstream_connected() const {
  for (UpstreamConn* u : pool_[0])
    if (u && u->ready()) return true;
  return false;
}

void Server::on_signal(uv_signal_t* h, int signum) {
  auto* srv = static_cast<Server*>(h->data);
  log(LogLevel::Warning, "Received {} scheduling shutdown...", signum == SIGINT ? "SIGINT" : "SIGTERM");
  for (Server* other : srv->shared_->servers)
    if (other != srv) other->post([other] { other->begin_shutdown(); });
  srv->begin_shutdown();
}

void Server::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_deadline_ = now() + kShutdownGraceMs;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  if (http_) http_->begin_shutdown();
  // Stop reading; answer what is already in flight, then close.
  std::vector<ClientConn*> all = clients_;
  for (ClientConn* c : all) c->close_after_flush();
  maybe_finish_shutdown();
}

void Server::maybe_finish_shutdown() {
  if ((clients_.empty() && (!http_ || http_->idle())) || now() >= shutdown_deadline_)
    uv_stop(&loop_);
}

}  // namespace respite

namespace respite {

void Server::apply_cache_config() {
  cache::Settings s = cache_->settings();
  s.max_memory = cfg_.cache_max_memory;
  s.ttl_ms = static_cast<uint64_t>(cfg_.cache_ttl_ms);
  s.max_keys = cfg_.cache_max_keys;
  s.max_value = cfg_.cache_max_value;
  s.policy = *cache::parse_policy(cfg_.cache_policy);
  s.xfetch_beta = cfg_.xfetch_beta;
  cache_->apply(s, micros());
  if (!cache_->enabled() && link_) link_->close();  // off: no link, reads go upstream
}

void Server::flush_cache() { cache_->flush_all(cache::Source::kLocal); }

}  // namespace respite
