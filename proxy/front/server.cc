// The server: listener, the per-loop-turn cork that flushes every connection once, the timer that
// enforces upstream timeouts and reconnects with backoff, and orderly shutdown on SIGTERM/SIGINT.
#include "proxy/front/server.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "proxy/net/listener.h"
#include "proxy/ops/log.h"
#include "proxy/ops/text.h"
#include "resp/reply_view.h"

namespace respite {

namespace {
constexpr uint64_t kTimerMs = 10;
constexpr uint64_t kShutdownGraceMs = 4000;
// A TLS client refused at maxclients gets this long to take its error (it needs a handshake).
constexpr uint64_t kRefusedTlsGraceMs = 1000;

}  // namespace

Server::Server(Config cfg, Shared* shared, int index)
    : cfg_(std::move(cfg)),
      shared_(shared),
      index_(index),
      loop_([this] { cork(); }, [this] { tick(); }, kTimerMs),
      cache_path_(shared, &loop_, this, &router_) {
  databases_ = cfg_.databases;
  tls_ctx_ = shared->tls_ctx;  // the loop's own from now on (set_tls)
  if (!shared->acl.loaded()) {
    // main.cc loads the users (and stops on an error); a test's Server does it here.
    if (std::string err = shared->acl.load(cfg_); !err.empty())
      log(LogLevel::Warning, "users: {}", err);
  }
  shared->paths.push_back(&cache_path_);  // loops are made before any runs
}

void configure_cache_threads(cache::Settings& s, int threads) {
  // Several loops share the cache: shard it so loops rarely wait for one another.
  s.thread_safe = threads > 1;
  s.shards = 0;  // the cache picks: one, or its thread-safe default
}

Server::~Server() = default;

int Server::run() {
  if (int rc = start(); rc != 0) return rc;
  loop_.run();
  finish();
  return 0;
}

int Server::start() {
  signal(SIGPIPE, SIG_IGN);
  // Resolve the upstream once; reconnects reuse the address.
  node_ = std::make_unique<Node>(this, this, cfg_.upstream_host, cfg_.upstream_port);
  if (std::string err = node_->resolve(loop_.uv()); !err.empty()) {
    log(LogLevel::Warning, "cannot resolve upstream {}: {}", cfg_.upstream, err);
    loop_.close();
    return 1;
  }
  router_.add(node_.get());
  node_->role = Node::Role::Primary;
  for (const auto& [host, port] : cfg_.replica_addrs) {
    auto n = std::make_unique<Node>(this, this, host, port);
    n->role = Node::Role::Replica;
    if (std::string err = n->resolve(loop_.uv()); !err.empty()) {
      log(LogLevel::Warning, "cannot resolve replica {}: {}", n->name(), err);
      loop_.close();
      return 1;
    }
    router_.add_replica(n.get());
    replica_nodes_.push_back(std::move(n));
  }
  if (cfg_.cluster && shared_->cluster_reads) cluster_read_setup();  // before the first sync
  if (cfg_.cluster)
    router_.set_cluster(
        &shared_->cluster_map,
        [this](const std::string& host, int port) { return make_cluster_node(host, port); },
        [this](const std::vector<uint16_t>& slots) { slots_moved(slots); });
  if (cfg_.cluster) router_.set_on_stale([this] { cluster_moved(); });
  if (!cfg_.sentinel_addrs.empty() && index_ == 0) {
    sentinel_ = std::make_unique<SentinelWatcher>(
        this, cfg_, cfg_.upstream_host, cfg_.upstream_port,
        [this](const std::string& host, int port) {
          for (Server* s : shared_->servers) s->post([s, host, port] { s->switch_primary(host, port); });
        },
        [this](bool hold) {
          for (Server* s : shared_->servers)
            s->post([s, hold] { s->hold_writes(hold ? s->now() + SentinelWatcher::kHoldMs : 0); });
        });
    if (std::string err = sentinel_->start(loop_.uv()); !err.empty()) {
      log(LogLevel::Warning, "{}", err);
      loop_.close();
      return 1;
    }
  }
  if (!replica_nodes_.empty()) {
    router_.set_read_from(cfg_.read_from == "replica"          ? ReadFrom::Replica
                          : cfg_.read_from == "prefer-replica" ? ReadFrom::PreferReplica
                                                               : ReadFrom::Primary,
                          shared_->ledger.get());
    if (index_ == 0)
      replica_monitor_ = std::make_unique<ReplicaMonitor>(this, shared_->ledger.get(),
                                                          node_.get(), router_.replicas());
    if (replica_monitor_)  // barrier parts waiting for a replica (CachePath::coherence_ping)
      replica_monitor_->set_on_applied([this] {
        for (Server* s : shared_->servers) s->post([s] { s->cache_path_.replicas_applied(); });
      });
    if (router_.reads_replicas())  // cache fills may read from replicas too
      for (size_t i = 0; i < router_.replicas().size(); ++i)
        cache_path_.add_replica(router_.replicas()[i], static_cast<int>(i), shared_->ledger.get());
  }

  uv_tcp_init(loop_.uv(), &listener_);
  listener_.data = this;
  uv_tcp_init(loop_.uv(), &tls_listener_);
  tls_listener_.data = this;
  if (open_listener() != 0 || (http_ && !http_->start())) {
    if (http_) http_->close();
    for (Server* other : shared_->servers)
      if (other != this) other->post([other] { other->begin_shutdown(); });
    close_listeners();
    loop_.close();
    return 1;
  }

  // One loop takes the signals and tells the others.
  loop_.start(index_ == 0, [this](int signum) {
    if (signum == SIGHUP) {  // as Redis ignores it; here it also reloads the certificates
      if (tls_ctx_) {
        std::string err = reload_tls(cfg_.tls, cfg_.tls);
        if (err.empty()) log(LogLevel::Notice, "SIGHUP: TLS certificates reloaded");
        else log(LogLevel::Warning, "SIGHUP: TLS certificates not reloaded, the old ones stay: {}", err);
      }
      return;
    }
    log(LogLevel::Warning, "Received {} scheduling shutdown...", signum == SIGINT ? "SIGINT" : "SIGTERM");
    for (Server* other : shared_->servers)
      if (other != this) other->post([other] { other->begin_shutdown(); });
    begin_shutdown();
  });
  shared_conn(2, 0);  // connect eagerly so PROXY INFO and health reflect the upstream at once
  started_.store(true, std::memory_order_release);
  if (index_ == 0) {
    log(LogLevel::Notice, "respite {} listening on {}:{}{} ({} thread{}), upstream {}",
        RESPITE_VERSION, cfg_.bind, cfg_.port,
        cfg_.tls_port > 0 ? fmt::format(" (TLS on {})", cfg_.tls_port) : std::string(),
        cfg_.threads, cfg_.threads > 1 ? "s" : "", cfg_.upstream);
    for (const auto& line : describe_config(cfg_)) log(LogLevel::Notice, "config: {}", line);
    log(LogLevel::Notice, "Ready to accept connections");
  }
  return 0;
}

// The port a listener is bound to (a configured 0 picks one), or -1.
int bound_port(const uv_tcp_t& listener) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

int Server::port() const { return bound_port(listener_); }

void Server::finish() {
  // Orderly teardown: every object frees itself in its close callback.
  if (http_) http_->close();
  dispatch_.drop_delayed();
  while (!clients_.empty()) clients_.back()->close();
  for (Node* n : router_.nodes()) n->close_all();
  if (sentinel_) sentinel_->stop();
  close_listeners();
  loop_.close();
  if (index_ == 0) log(LogLevel::Notice, "respite is now ready to exit, bye bye...");
}

int Server::open_listener() {
  // As Redis: with a TLS port, port 0 is no plain port (alone, it picks a free one: tests).
  if (cfg_.port != 0 || cfg_.tls_port == 0)
    if (int rc = listen_tcp(&listener_, cfg_.bind, cfg_.port, cfg_.threads > 1, on_connection, "");
        rc != 0)
      return rc;
  if (cfg_.tls_port > 0)
    return listen_tcp(&tls_listener_, cfg_.bind, cfg_.tls_port, cfg_.threads > 1, on_connection,
                      "TLS");
  return 0;
}

void Server::close_listeners() {
  for (uv_tcp_t* l : {&listener_, &tls_listener_})
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(l)))
      uv_close(reinterpret_cast<uv_handle_t*>(l), nullptr);
}

void Server::post(std::function<void()> fn) { loop_.post(std::move(fn)); }

namespace {

// A peer address as peer_name() writes it ("1.2.3.4:5", "[::1]:5") on the loopback interface.
bool loopback_peer(std::string_view peer) {
  std::string_view host = peer;
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.find(']') - 1);
  else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  return host.substr(0, 4) == "127." || host == "::1" || host.substr(0, 11) == "::ffff:127.";
}

// Redis's protected-mode refusal (networking.c), in respite's option names.
constexpr std::string_view kProtectedMode =
    "-DENIED respite is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from the "
    "loopback interface. If you want to connect from external computers to respite you may "
    "adopt one of the following solutions: 1) Just disable protected mode by editing respite's "
    "configuration file, setting the protected-mode option to 'no', and then restarting "
    "respite, however MAKE SURE respite is not publicly accessible from internet if you do so. "
    "2) If you started respite manually just for testing, restart it with the "
    "'--protected-mode no' option. 3) Set up an authentication password for the default user "
    "(requirepass, or a 'user default' line with a password). NOTE: You only need to do one of "
    "the above things in order for respite to start accepting connections from the outside.\r\n";

}  // namespace

void Server::on_connection(uv_stream_t* s, int status) {
  auto* srv = static_cast<Server*>(s->data);
  if (status < 0) return;
  const bool tls = s == reinterpret_cast<uv_stream_t*>(&srv->tls_listener_);
  auto* c = new ClientConn(srv, srv->shared_->next_client_id.fetch_add(1),
                           tls ? srv->tls_ctx_ : nullptr);
  if (tls) srv->stats_.tls_connections_received++;
  if (c->accept(s) != 0) {
    c->server_index = SIZE_MAX;
    c->close();
    return;
  }
  srv->stats_.total_connections_received++;
  c->server_index = srv->clients_.size();
  srv->clients_.push_back(c);
  c->peer = c->stream_io().peer_name();
  if (tls)
    c->handshake_deadline_ms = srv->now() + static_cast<uint64_t>(srv->cfg_.tls_handshake_timeout_ms);
  // A refused TLS client gets its error too: its stream reads (the handshake) before it can
  // write; briefly, so refused clients cannot hold descriptors.
  auto refuse = [&](std::string_view why) {
    if (tls) {
      c->handshake_deadline_ms =
          std::min(c->handshake_deadline_ms, srv->now() + kRefusedTlsGraceMs);
      c->start();
    }
    c->immediate_reply() += why;
    c->close_after_flush();
  };
  if (srv->shared_->clients.fetch_add(1) + 1 > srv->cfg_.maxclients) {
    srv->stats_.rejected_connections++;
    return refuse("-ERR max number of clients reached\r\n");
  }
  // As Redis 7.0: with the default user nopass (even if off), only loopback clients get in.
  if (srv->cfg_.protected_mode && srv->shared_->acl.no_passwords() && !loopback_peer(c->peer))
    return refuse(kProtectedMode);
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
  loop_.keep_polling(true);
}

void Server::add_dirty(UpstreamConn* u, bool listed) {
  if (listed) {
    // From the back: a connection written again is usually one of the last few.
    auto it = std::find(dirty_upstreams_.rbegin(), dirty_upstreams_.rend(), u);
    // Not in the list: it is in the batch the cork is flushing now, which writes it anyway.
    if (it == dirty_upstreams_.rend()) return;
    dirty_upstreams_.erase(std::next(it).base());
  }
  dirty_upstreams_.push_back(u);
  last_dirty = u;
}

void Server::cork() {
  Server* srv = this;
  // Input deferred in the previous turn goes first, after this turn's reads were queued.
  if (!srv->deferred_input_.empty()) {
    srv->input_clients_.insert(srv->input_clients_.end(), srv->deferred_input_.begin(),
                               srv->deferred_input_.end());
    srv->deferred_input_.clear();
    srv->loop_.keep_polling(false);
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
    srv->last_dirty = nullptr;
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

Node* Server::make_cluster_node(const std::string& host, int port) {
  auto n = std::make_unique<Node>(this, this, host, port);
  // An address the cluster gave (an IP, as Redis announces them): resolving does not block.
  if (std::string err = n->resolve(loop_.uv()); !err.empty()) {
    log(LogLevel::Warning, "cannot resolve cluster node {}: {}", n->name(), err);
    return nullptr;
  }
  n->role = Node::Role::Primary;
  // Reads the router sends to it as a replica go on its READONLY connections (Node::read_conn).
  if (shutting_down_) n->stop_connecting();
  router_.add(n.get());
  cluster_nodes_.push_back(std::move(n));
  return cluster_nodes_.back().get();
}

namespace {
bool slot_listed(const void* ctx, std::string_view key) {
  return (*static_cast<const std::vector<bool>*>(ctx))[key_slot(key)];
}
}  // namespace

void Server::slots_moved(const std::vector<uint16_t>& slots) {
  if (!cache_path_.cache().enabled()) return;
  std::vector<bool> doomed(kClusterSlots, false);
  for (uint16_t s : slots) doomed[s] = true;
  cache_path_.cache().flush_keys_if(slot_listed, &doomed, cache::Source::kLocal);
}

void Server::tick() {
  Server* srv = this;
  uint64_t now = srv->now();
  if (router_.cluster()) {
    router_.sync_if_changed();  // before the nodes are walked: it may add some
    dispatch_.retry_due(now);
  }
  for (Node* n : srv->router_.nodes()) {
    n->check_timeouts(now);
    n->reconnect(now);
  }
  srv->cache_path_.tick(now);
  if (srv->replica_monitor_ && !srv->shutting_down_) srv->replica_monitor_->tick(now);
  if (index_ == 0 && shared_->cluster_reads && !shutting_down_) follow_cluster_replicas();
  if (srv->sentinel_ && !srv->shutting_down_) srv->sentinel_->tick(now);
  if (!srv->shutting_down_ && srv->cache_path_.cache().enabled())
    srv->cache_path_.cache().expire_step(srv->tick_micros(), 64);
  if (now >= srv->next_token_check_ms_) {
    srv->next_token_check_ms_ = now + 100;
    // Replies of streaming clients waiting for a token that never came (an error in its place).
    std::vector<ClientConn*> waiting;
    for (ClientConn* c : srv->clients_)
      if (c->stream_waiting()) waiting.push_back(c);
    for (ClientConn* c : waiting) c->stream_token_expired(now);
  }
  if (tls_ctx_ && now >= next_handshake_check_ms_) close_late_handshakes(now);
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
  srv->pinned_count_.store(srv->node_->pinned_count(), std::memory_order_relaxed);
  srv->upstream_up_.store(srv->upstream_connected(), std::memory_order_relaxed);
  if (srv->shutting_down_) srv->maybe_finish_shutdown();
}

UpstreamConn* Server::shared_conn(int proto, uint64_t client_id) {
  return router_.primary()->shared_conn(proto, client_id);
}

UpstreamConn* Server::open_pinned(ClientConn* c, Node* node, int db) {
  UpstreamConn* u = node->open_pinned(c, c->proto, db < 0 ? c->db : db);
  if (u) learn_upstream_client_id(u);  // CLIENT ID: its first request after the handshake
  return u;
}

void Server::upstream_readonly(Node* n) {
  if (n != router_.primary() || cfg_.sentinel_addrs.empty()) return;
  Server* first = shared_->servers.front();
  first->post([first] {
    if (first->sentinel_) first->sentinel_->reask();
  });
}

void Server::switch_primary(const std::string& host, int port) {
  if (shutting_down_) return;
  const std::string old = node_->name();
  if (std::string err = node_->retarget(loop_.uv(), host, port); !err.empty()) {
    log(LogLevel::Warning, "cannot resolve the new primary {}:{}: {}", host, port, err);
    return;
  }
  // The promoted server was one of our replicas: its place goes to the old primary, which
  // Sentinel makes a replica of the new one. It takes reads once the monitor sees it
  // replicating the new primary's history and caught up (its floor, WriteLedger::set_healthy).
  for (size_t j = 0; j < replica_nodes_.size(); ++j) {
    Node& r = *replica_nodes_[j];
    if (r.name() != node_->name()) continue;
    if (index_ == 0) shared_->ledger->set_healthy(j, false);
    if (std::string err = r.retarget(loop_.uv(), cfg_.upstream_host, cfg_.upstream_port);
        !err.empty())
      log(LogLevel::Warning, "cannot resolve the old primary {} as a replica: {}", old, err);
    else if (index_ == 0)
      log(LogLevel::Notice, "replica {} is the primary now: the old primary {} takes its place",
          node_->name(), old);
  }
  cfg_.upstream = join_host_port(host, port);
  cfg_.upstream_host = host;
  cfg_.upstream_port = port;
  writes_held_until_ = 0;
  // The tracking link's loss flushed the cache already; without one (cache-coherence ttl)
  // nothing else would drop what the old primary said.
  cache_path_.flush();
  log(LogLevel::Notice, "primary {} -> {}: connections to the old one closed, cache flushed", old,
      node_->name());
  shared_conn(2, 0);  // connect now: health, and the probes of a new primary
}

void Server::on_shared_up(UpstreamConn* u) {
  if (u->node() != router_.primary()) return;  // the probes below ask the primary
  ask_databases(u);
  read_upstream_version(u);
  upstream_up_.store(upstream_connected(), std::memory_order_relaxed);
}

void Server::upstream_gone(UpstreamConn* u) {
  dirty_upstreams_.erase(std::remove(dirty_upstreams_.begin(), dirty_upstreams_.end(), u),
                         dirty_upstreams_.end());
  if (last_dirty == u) last_dirty = nullptr;
}

void Server::on_link_lost(Node* n) {
  if (Tracking* t = cache_path_.tracking_for(n)) t->link_lost("connection lost");
  // A cluster node lost: a failover may be under way; the map is read again soon.
  if (router_.cluster() && !shutting_down_) cluster_moved();
}

void Server::on_fetch_lost(Node* n) {
  if (Tracking* t = cache_path_.tracking_for(n)) t->fetch_lost();
}

bool Server::cache_usable(const ClientConn* c) const {
  // A client with forwarded requests in flight reads through its upstream connection, so a GET
  // pipelined after its own SET sees the SET. A reply held by a tracking barrier: the write's
  // invalidations may not have arrived yet.
  return cache_path_.usable() && !c->pinned && c->inflight == 0 && c->barriers == 0 &&
         !c->in_multi && !c->streaming;
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

bool Server::upstream_connected() const { return node_ && node_->connected(); }

void Server::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  for (Node* n : router_.nodes()) n->stop_connecting();
  cache_path_.stop_tracking();
  if (replica_monitor_) replica_monitor_->stop();
  for (auto& [s, m] : cluster_monitors_) m->stop();
  if (sentinel_) sentinel_->stop();
  shutdown_deadline_ = now() + kShutdownGraceMs;
  close_listeners();
  if (http_) http_->begin_shutdown();
  // Stop reading; answer what is already in flight, then close.
  std::vector<ClientConn*> all = clients_;
  for (ClientConn* c : all) c->close_after_flush();
  maybe_finish_shutdown();
}

void Server::maybe_finish_shutdown() {
  if ((clients_.empty() && (!http_ || http_->idle())) || now() >= shutdown_deadline_)
    loop_.stop();
}

}  // namespace respite

namespace respite {

void Server::apply_cache_config() {
  CacheStore& cache = cache_path_.cache();
  cache::Settings s = cache.settings();
  s.max_memory = cfg_.cache_max_memory;
  s.ttl_ms = static_cast<uint64_t>(cfg_.cache_ttl_ms);
  s.max_keys = cfg_.cache_max_keys;
  s.max_value = cfg_.cache_max_value;
  s.policy = *cache::parse_policy(cfg_.cache_policy);
  s.xfetch_beta = cfg_.xfetch_beta;
  cache.apply(s, micros());
  if (!cache.enabled()) cache_path_.close_links();  // off: no link, reads go upstream
}

void Server::flush_cache() { cache_path_.flush(); }

}  // namespace respite
