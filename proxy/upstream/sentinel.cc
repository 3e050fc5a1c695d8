// Sentinel discovery at start (blocking, hiredis) and the watcher that follows failovers on the
// first loop (respite's own connections). See sentinel.h.
#include "proxy/upstream/sentinel.h"

#include "proxy/upstream/blocking_client.h"

#include <hiredis/hiredis.h>

#include <fmt/format.h>

#include <cstdlib>
#include <fmt/ranges.h>

#include "proxy/ops/log.h"
#include "proxy/ops/text.h"
#include "resp/value.h"

namespace respite {

namespace {

using Ctx = BlockingConn;
using Reply = BlockingReply;

Reply command(BlockingClient* c, std::vector<std::string> args) { return blocking_command(c, args); }

Ctx open(const TlsContext* tls, const std::string& host, int port, const std::string& user,
         const std::string& password, std::string& err) {
  return blocking_open(host, port, user, password, err, 1000, tls);
}

// A command as a RESP array of bulk strings.
std::string resp_array(std::initializer_list<std::string_view> args) {
  std::string out = fmt::format("*{}\r\n", args.size());
  for (std::string_view a : args) fmt::format_to(std::back_inserter(out), "${}\r\n{}\r\n", a.size(), a);
  return out;
}

std::string field(const redisReply* flat, std::string_view name) {
  // SENTINEL REPLICAS answers, per replica, a flat list: name, value, name, value ...
  for (size_t i = 0; i + 1 < flat->elements; i += 2)
    if (flat->element[i]->type == REDIS_REPLY_STRING && name == flat->element[i]->str &&
        flat->element[i + 1]->type == REDIS_REPLY_STRING)
      return flat->element[i + 1]->str;
  return "";
}

}  // namespace

SentinelAnswer ask_sentinels(const Config& cfg, bool with_replicas, const TlsContext* tls) {
  SentinelAnswer a;
  std::vector<std::string> why;
  for (const auto& [host, port] : cfg.sentinel_addrs) {
    const std::string at = fmt::format("{}:{}", host, port);
    std::string err;
    Ctx c = open(tls, host, port, cfg.sentinel_user, cfg.sentinel_password, err);
    if (!c) {
      why.push_back(fmt::format("{}: {}", at, err));
      continue;
    }
    Reply r = command(c.get(), {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", cfg.sentinel_master});
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
      why.push_back(fmt::format("{}: {}", at, !r                            ? c->errstr
                                              : r->type == REDIS_REPLY_ERROR ? r->str
                                                                             : "master not known"));
      continue;
    }
    std::string primary = r->element[0]->str;
    int primary_port = std::atoi(r->element[1]->str);
    // The primary must say so itself (a Sentinel can be behind a failover).
    Ctx p = open(tls, primary, primary_port, cfg.upstream_user, cfg.upstream_password, err);
    Reply role = p ? command(p.get(), {"ROLE"}) : nullptr;
    if (!role || role->type != REDIS_REPLY_ARRAY || role->elements < 1 ||
        role->element[0]->type != REDIS_REPLY_STRING ||
        std::string_view(role->element[0]->str) != "master") {
      why.push_back(fmt::format("{} names {}:{}, which is not a primary ({})", at, primary,
                                primary_port, p ? "ROLE" : err));
      continue;
    }
    a.host = primary;
    a.port = primary_port;
    if (with_replicas) {
      Reply rs = command(c.get(), {"SENTINEL", "REPLICAS", cfg.sentinel_master});
      for (size_t i = 0; rs && rs->type == REDIS_REPLY_ARRAY && i < rs->elements; ++i) {
        const redisReply* e = rs->element[i];
        if (e->type != REDIS_REPLY_ARRAY) continue;
        std::string flags = field(e, "flags");
        if (flags.find("s_down") != std::string::npos ||
            flags.find("o_down") != std::string::npos ||
            flags.find("disconnected") != std::string::npos)
          continue;
        int rport = std::atoi(field(e, "port").c_str());
        if (rport > 0) a.replicas.emplace_back(field(e, "ip"), rport);
      }
    }
    return a;
  }
  a.error = why.empty() ? "no Sentinel given" : fmt::format("{}", fmt::join(why, "; "));
  return a;
}

SentinelWatcher::SentinelWatcher(UpstreamHost* host, const Config& cfg, std::string primary_host,
                                 int primary_port, SwitchFn on_switch,
                                 std::function<void(bool)> on_hold)
    : host_(host),
      own_host_(host),
      cfg_(cfg),
      primary_host_(std::move(primary_host)),
      primary_port_(primary_port),
      on_switch_(std::move(on_switch)),
      on_hold_(std::move(on_hold)) {
  msg_sink_ = std::unique_ptr<ReplySink>(
      new FnSink([this](std::string_view reply, bool failed) {
        if (!failed) on_message(reply);
      }));
}

SentinelWatcher::~SentinelWatcher() = default;

std::string SentinelWatcher::start(uv_loop_t* loop) {
  for (const auto& [h, p] : cfg_.sentinel_addrs) {
    Sentinel s;
    NodeObserver* observer = this;
    s.node = std::make_unique<Node>(&own_host_, observer, h, p);
    s.node->set_auth(cfg_.sentinel_user, cfg_.sentinel_password);
    if (std::string err = s.node->resolve(loop); !err.empty())
      return fmt::format("cannot resolve Sentinel {}: {}", s.node->name(), err);
    sentinels_.push_back(std::move(s));
  }
  return "";
}

void SentinelWatcher::tick(uint64_t now) {
  if (stopping_) return;
  for (auto& s : sentinels_) s.node->check_timeouts(now);
  if (now >= next_sub_ms_) {
    next_sub_ms_ = now + 500;
    for (auto& s : sentinels_)
      if (!s.node->tracking.link) subscribe(s);
  }
  size_t n = 0;
  for (const auto& s : sentinels_) n += s.subscribed;
  reachable_.store(n, std::memory_order_relaxed);
  if (now >= next_ask_ms_ && round_outstanding_ == 0) {
    next_ask_ms_ = now + kReaskMs;
    round_answers_.clear();
    for (auto& s : sentinels_) ask(s);
  }
}

void SentinelWatcher::subscribe(Sentinel& s) {
  auto* link = new UpstreamConn(&own_host_, s.node.get(), 2, nullptr, 0);
  own_host_.counts.upstream_connects++;  // (Node::shared_conn counts the questions')
  s.node->tracking.link = link;
  s.subscribed = false;
  link->stream_sink = msg_sink_.get();
  Sentinel* sp = &s;
  static const std::string kSub = resp_array({"SUBSCRIBE", "+switch-master", "+selected-slave",
                                              "+sdown", "-sdown", "+odown", "+replica"});
  // One reply per channel; the sink is the Sentinel's own and outlives the connection.
  if (!s.sub_sink)
    s.sub_sink = std::unique_ptr<ReplySink>(new FnSink([this, sp](std::string_view reply, bool failed) {
      if (failed || reply.empty() || reply[0] == '-') {
        if (!failed) log(LogLevel::Warning, "Sentinel {} refused SUBSCRIBE: {}", sp->node->name(),
                         reply.substr(0, reply.find('\r')));
        if (sp->node->tracking.link && !sp->node->tracking.link->closed())
          sp->node->tracking.link->close();
        return;
      }
      if (!sp->subscribed) {
        sp->subscribed = true;
        log(LogLevel::Verbose, "subscribed to Sentinel {}", sp->node->name());
      }
    }));
  link->request(s.sub_sink.get(), kSub, 0, 6);  // one reply per channel
  static const std::string kPsub = resp_array({"PSUBSCRIBE", "-failover-abort-*"});
  link->request(s.sub_sink.get(), kPsub, 0, 1);
  link->connect();
}

void SentinelWatcher::on_link_lost(Node*) {
  for (auto& s : sentinels_) s.subscribed = s.subscribed && s.node->tracking.link != nullptr;
}

void SentinelWatcher::ask(Sentinel& s) {
  if (s.asking) return;
  UpstreamConn* u = s.node->shared_conn(2, 0);
  if (!u) return;
  s.asking = true;
  round_outstanding_++;
  Sentinel* sp = &s;
  const std::string raw = resp_array({"SENTINEL", "GET-MASTER-ADDR-BY-NAME", cfg_.sentinel_master});
  u->request(once_sink([this, sp](std::string_view reply, bool failed) {
               sp->asking = false;
               resp::Value v;
               long long port = 0;
               if (!failed && resp::decode(reply, v).status == resp::ScanResult::Status::Ok &&
                   v.type == '*' && v.elements.size() == 2 && v.elements[0].is_string() &&
                   v.elements[1].is_string() && parse_ll(v.elements[1].str, port) && port > 0 &&
                   port <= 65535)
                 round_answers_.emplace_back(v.elements[0].str, static_cast<int>(port));
               if (--round_outstanding_ == 0 && !stopping_) round_done();
             }),
             raw, 0);
}

void SentinelWatcher::round_done() {
  if (round_answers_.empty() || round_answers_.size() * 2 <= sentinels_.size()) return;
  for (const auto& a : round_answers_)
    if (a != round_answers_.front()) return;
  // Sentinels that missed a failover still name the old primary for a while: never go back to
  // it on their word alone (+switch-master, which only the failover's leader sends, may).
  if (round_answers_.front() == previous_ && host_->now() < previous_until_ms_) return;
  named(round_answers_.front().first, round_answers_.front().second, false);
}

void SentinelWatcher::on_message(std::string_view reply) {
  resp::Value v;
  if (resp::decode(reply, v).status != resp::ScanResult::Status::Ok || v.type != '*' ||
      v.elements.size() < 3)
    return;
  // ["message", channel, payload] or ["pmessage", pattern, channel, payload]
  const size_t at = v.elements.size() == 4 ? 2 : 1;
  if (v.elements.size() > 4 || !v.elements[at].is_string() || !v.elements[at + 1].is_string())
    return;
  const std::string& channel = v.elements[at].str;
  const std::string& payload = v.elements[at + 1].str;
  if (channel.rfind("-failover-abort", 0) == 0) {
    // "-failover-abort-not-elected master mymaster 127.0.0.1 6379": the old primary stays.
    if (payload.find(fmt::format(" {} ", cfg_.sentinel_master)) != std::string::npos) {
      log(LogLevel::Warning, "Sentinel: {} {}: writes go to the primary again", channel, payload);
      on_hold_(false);
    }
    return;
  }
  if (channel == "+selected-slave") {
    // "slave <ip:port> <ip> <port> @ <master> <ip> <port>": the replica to be promoted.
    const std::string ours = fmt::format(" @ {} ", cfg_.sentinel_master);
    if (payload.find(ours) != std::string::npos) {
      log(LogLevel::Warning, "Sentinel: failover of {} begun ({}): writes get an error until it ends",
          cfg_.sentinel_master, payload);
      on_hold_(true);
    }
    return;
  }
  if (channel != "+switch-master") {
    // "+sdown master mymaster 127.0.0.1 6379", "+replica slave <addr> <ip> <port> @ mymaster
    // <ip> <port>": worth a line in the log when about our master.
    const std::string name = cfg_.sentinel_master;
    if (payload.find(fmt::format(" {} ", name)) != std::string::npos)
      log(LogLevel::Notice, "Sentinel: {} {}", channel, payload);
    return;
  }
  // "<name> <old ip> <old port> <new ip> <new port>"
  std::vector<std::string_view> w;
  std::string_view rest = payload;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    w.push_back(rest.substr(0, sp));
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  long long port = 0;
  if (w.size() != 5 || w[0] != cfg_.sentinel_master || !parse_ll(w[4], port) || port <= 0 ||
      port > 65535)
    return;
  named(std::string(w[3]), static_cast<int>(port), true);
}

void SentinelWatcher::named(const std::string& host, int port, bool announced) {
  if (host == primary_host_ && port == primary_port_) return;
  log(LogLevel::Warning, "the primary of {} moved from {}:{} to {}:{} ({})", cfg_.sentinel_master,
      primary_host_, primary_port_, host, port,
      announced ? "+switch-master" : "SENTINEL GET-MASTER-ADDR-BY-NAME");
  previous_ = {primary_host_, primary_port_};
  previous_until_ms_ = host_->now() + kPreviousMs;
  primary_host_ = host;
  primary_port_ = port;
  switches_.fetch_add(1, std::memory_order_relaxed);
  on_switch_(host, port);
}

void SentinelWatcher::stop() {
  stopping_ = true;
  for (auto& s : sentinels_) s.node->close_all();
}

}  // namespace respite
