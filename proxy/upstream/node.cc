// Node: the connections to one upstream Redis on one loop, and its reconnect backoff.
#include "proxy/upstream/node.h"

#include <algorithm>
#include <cstring>

namespace respite {

namespace {
constexpr uint64_t kMaxBackoffMs = 500;
}  // namespace

Node::Node(UpstreamHost* up, NodeObserver* observer, std::string host, int port)
    : up_(up), observer_(observer), host_(std::move(host)), port_(port) {
  name_ = host_ + ":" + std::to_string(port_);
}

std::string Node::resolve(uv_loop_t* loop) {
  uv_getaddrinfo_t gai;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(port_);
  int rc = uv_getaddrinfo(loop, &gai, nullptr, host_.c_str(), port.c_str(), &hints);
  if (rc != 0 || !gai.addrinfo) return uv_strerror(rc);
  std::memcpy(&addr_, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
  uv_freeaddrinfo(gai.addrinfo);
  return "";
}

std::string Node::retarget(uv_loop_t* loop, const std::string& host, int port) {
  const std::string old_host = host_;
  const int old_port = port_;
  host_ = host;
  port_ = port;
  if (std::string err = resolve(loop); !err.empty()) {
    host_ = old_host;
    port_ = old_port;
    return err;
  }
  name_ = host_ + ":" + std::to_string(port_);
  const bool stopping = stopping_;
  close_all();  // conn_gone unlists each; the pools are empty after
  stopping_ = stopping;
  backoff_ms_ = 0;
  next_attempt_[0] = next_attempt_[1] = 0;
  tracking.next_attempt_ms = 0;
  tracking.backoff_ms = 0;
  return "";
}

UpstreamConn* Node::pooled(std::vector<UpstreamConn*>& v, int proto, uint64_t client_id,
                           bool readonly) {
  if (v.empty()) v.assign(static_cast<size_t>(up_->config().upstream_connections), nullptr);
  size_t idx = client_id % v.size();
  if (!v[idx]) {
    if (up_->now() < next_attempt_[proto - 2] || stopping_) return nullptr;
    auto* u = new UpstreamConn(up_, this, proto, nullptr, 0, readonly);
    v[idx] = u;
    up_->stats().upstream_connects++;
    u->connect();
  }
  return v[idx];
}

UpstreamConn* Node::shared_conn(int proto, uint64_t client_id) {
  return pooled(pool_[proto - 2], proto, client_id, false);
}

UpstreamConn* Node::read_conn(int proto, uint64_t client_id) {
  return pooled(ro_pool_[proto - 2], proto, client_id, /*readonly=*/true);
}

UpstreamConn* Node::open_pinned(Requester* owner, int proto, int db) {
  auto* u = new UpstreamConn(up_, this, proto, owner, db);
  pinned_.push_back(u);
  up_->stats().pinned_connections_opened++;
  u->connect();
  return u->closed() ? nullptr : u;
}

bool Node::connected() const {
  for (UpstreamConn* u : pool_[0])
    if (u && u->ready()) return true;
  return false;
}

UpstreamConn* Node::first_ready() const {
  if (pool_[0].empty() || !pool_[0][0] || !pool_[0][0]->ready()) return nullptr;
  return pool_[0][0];
}

void Node::conn_up(UpstreamConn* u) {
  if (u->owner()) return;
  backoff_ms_ = 0;  // the node answers, and took the handshake (UpstreamConn::connected_at_ms)
  if (u != tracking.link && u != tracking.fetch && !u->readonly()) observer_->on_shared_up(u);
}

void Node::conn_gone(UpstreamConn* u) {
  if (u == tracking.link) {
    tracking.link = nullptr;
    observer_->on_link_lost(this);
    return;
  }
  if (u == tracking.fetch) {
    tracking.fetch = nullptr;
    observer_->on_fetch_lost(this);
    return;
  }
  auto& r = tracking.retired;
  r.erase(std::remove(r.begin(), r.end(), u), r.end());
  auto it = std::find(pinned_.begin(), pinned_.end(), u);
  if (it != pinned_.end()) {
    *it = pinned_.back();
    pinned_.pop_back();
    return;
  }
  for (int p = 0; p < 4; ++p) {
    for (UpstreamConn*& slot : p < 2 ? pool_[p] : ro_pool_[p - 2]) {
      if (slot != u) continue;
      slot = nullptr;
      // A connection that never came up means the upstream is down, or refuses respite's
      // handshake (a wrong password): back off either way.
      if (u->connected_at_ms == 0)
        backoff_ms_ = std::min(kMaxBackoffMs, std::max<uint64_t>(50, backoff_ms_ * 2));
      next_attempt_[p % 2] = up_->now() + backoff_ms_;
    }
  }
}

void Node::check_timeouts(uint64_t now) {
  for (auto* pools : {pool_, ro_pool_})
    for (int p = 0; p < 2; ++p)
      for (UpstreamConn* u : pools[p])
        if (u) u->check_timeout(now);
  // check_timeout may close (and unlist) a connection: iterate over copies.
  std::vector<UpstreamConn*> pinned = pinned_;
  for (UpstreamConn* u : pinned)
    if (!u->closed()) u->check_timeout(now);
  if (tracking.fetch) tracking.fetch->check_timeout(now);
  std::vector<UpstreamConn*> retired = tracking.retired;
  for (UpstreamConn* u : retired)
    if (!u->closed()) u->check_timeout(now);
  if (tracking.link) tracking.link->check_timeout(now);
}

void Node::reconnect(uint64_t now) {
  // Keep the RESP2 connections up (health), and RESP3 ones once a client has used them.
  if (stopping_) return;
  for (int p = 0; p < 2; ++p) {
    auto& v = pool_[p];
    for (size_t i = 0; i < v.size(); ++i)
      if (!v[i] && now >= next_attempt_[p]) shared_conn(p + 2, i);
  }
}

void Node::close_all() {
  stopping_ = true;
  for (auto* pools : {pool_, ro_pool_})
    for (int p = 0; p < 2; ++p)
      for (UpstreamConn*& u : pools[p])
        if (u) u->close();
  while (!pinned_.empty()) pinned_.back()->close();
  if (tracking.fetch) tracking.fetch->close();
  while (!tracking.retired.empty()) tracking.retired.back()->close();
  if (tracking.link) tracking.link->close();
}

}  // namespace respite
