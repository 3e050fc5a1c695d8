#include "proxy/front/cluster_broadcast.h"

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/front/client.h"
#include "proxy/front/local_commands.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_view.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {

enum class Merge : uint8_t { None, Info, Same };

Merge merge_of(const CommandInfo* ci) {
  if (!ci) return Merge::None;
  static constexpr std::string_view kSame[] = {
      "config|set",    "config|resetstat", "script|load",      "script|flush",
      "function|load", "function|delete",  "function|flush",   "function|restore"};
  if (ci->name == "info") return Merge::Info;
  for (std::string_view n : kSame)
    if (ci->name == n) return Merge::Same;
  return Merge::None;
}

bool integer(std::string_view v, long long& out) {
  if (v.empty()) return false;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size();
}

// Calls f(name, value) for each "name=value" of "keys=1,expires=0,avg_ttl=0".
template <class F>
void each_field(std::string_view line, F f) {
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t comma = line.find(',', pos);
    std::string_view kv = line.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    size_t eq = kv.find('=');
    f(kv.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
}

// A db's keyspace line of two masters: keys and expires summed, the rest the first's.
std::string merge_keyspace(std::string_view a, std::string_view b) {
  std::map<std::string, long long, std::less<>> add;
  each_field(b, [&](std::string_view name, std::string_view value) {
    long long n;
    if (integer(value, n)) add[std::string(name)] = n;
  });
  std::string out;
  each_field(a, [&](std::string_view name, std::string_view value) {
    if (!out.empty()) out += ',';
    long long n;
    auto it = add.find(name);
    if ((name == "keys" || name == "expires") && integer(value, n) && it != add.end())
      out += fmt::format("{}={}", name, n + it->second);
    else
      out += value.data() == nullptr ? std::string(name) : fmt::format("{}={}", name, value);
  });
  return out;
}

}  // namespace

std::string merge_info(const std::vector<std::string>& texts) {
  if (texts.empty()) return {};
  // The first master's lines, in its order; the others' values added where summing means
  // something (counts and sizes: clients, memory, stats; keys per db, including dbs only
  // another master has).
  struct Line {
    std::string section, name, value;
    bool field;
  };
  std::vector<Line> lines;
  std::map<std::string, size_t> at;  // name -> index in lines
  auto summed = [](const std::string& section, const std::string& name) {
    // Limits and the machine's own figures are each node's, not amounts.
    if (name.starts_with("max") || name == "total_system_memory") return false;
    return section == "clients" || section == "memory" || section == "stats";
  };
  for (size_t t = 0; t < texts.size(); ++t) {
    std::string section;
    std::string_view text = texts[t];
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      pos = nl == std::string_view::npos ? text.size() : nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("# ")) section = lower(std::string(line.substr(2)));
      size_t colon = line.find(':');
      const bool field = !line.empty() && line[0] != '#' && colon != std::string_view::npos;
      std::string name = field ? std::string(line.substr(0, colon)) : std::string();
      std::string value = field ? std::string(line.substr(colon + 1)) : std::string();
      if (t == 0) {
        if (field) at[name] = lines.size();
        lines.push_back({section, field ? name : std::string(line), value, field});
        continue;
      }
      if (!field) continue;
      auto it = at.find(name);
      if (it == at.end()) {
        if (section == "keyspace") {
          // A db only this master has: after the first's keyspace lines.
          size_t insert = lines.size();
          for (size_t i = 0; i < lines.size(); ++i)
            if (lines[i].section == "keyspace") insert = i + 1;
          for (auto& [n, idx] : at)
            if (idx >= insert) idx++;
          lines.insert(lines.begin() + static_cast<long>(insert), {section, name, value, true});
          at[name] = insert;
        }
        continue;
      }
      Line& l = lines[it->second];
      long long a, b;
      if (l.section == "keyspace") l.value = merge_keyspace(l.value, value);
      else if (summed(l.section, l.name) && integer(l.value, a) && integer(value, b)) l.value = std::to_string(a + b);
    }
  }
  std::string out;
  for (const Line& l : lines) {
    out += l.field ? l.name + ":" + l.value : l.name;
    out += "\r\n";
  }
  // Redis ends INFO with one "\r\n" after the last line; a trailing empty line stays one.
  while (out.size() >= 4 && out.ends_with("\r\n\r\n")) out.resize(out.size() - 2);
  return out;
}

namespace {

struct Gather {
  ClientConn* c;
  uint64_t seq;
  Merge merge;
  size_t left;
  std::vector<std::string> replies;
  std::string failure;  // the first failed part's error reply
};

void finish(Gather* g) {
  ClientConn* c = g->c;
  std::string out;
  if (!g->failure.empty()) {
    out = g->failure;
  } else if (g->merge == Merge::Same) {
    out = g->replies[0];
    for (const std::string& r : g->replies)
      if (r != g->replies[0]) {
        out = r;  // a master that answered otherwise (an error): the client sees it
        break;
      }
  } else {
    // INFO: a bulk (RESP2) or verbatim (RESP3) string from every master.
    std::vector<std::string> texts;
    bool verbatim = false;
    for (const std::string& r : g->replies) {
      resp::ReplyItem v;
      if (!resp::ReplyView(r).next(v) || !v.is_string() || v.is_error()) {
        out = r;
        break;
      }
      verbatim = v.type == '=';
      std::string_view s = v.str;
      if (verbatim && s.size() >= 4) s.remove_prefix(4);  // "txt:"
      texts.emplace_back(s);
    }
    if (out.empty()) {
      std::string merged = merge_info(texts);
      if (verbatim) out = fmt::format("={}\r\ntxt:{}\r\n", merged.size() + 4, merged);
      else resp::Writer(out, 2).bulk(merged);
    }
  }
  c->complete(g->seq, out);
  c->on_flight_done();
  c->unref();
  delete g;
}

}  // namespace

bool cluster_broadcast(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo* ci) {
  const Merge merge = merge_of(ci);
  if (merge == Merge::None) return false;
  if (c->inflight > 0 || c->flights_waiting > 0) {
    c->stall();  // after what this client has in flight: every master sees it in order
    return true;
  }
  const std::vector<Node*> masters = srv.router().masters();
  if (masters.empty()) return false;
  std::string encoded;
  std::string_view raw = srv.dispatch().wire(f, encoded);
  std::vector<UpstreamConn*> conns;
  for (Node* m : masters) {
    UpstreamConn* u = m->shared_conn(c->proto, c->id);
    if (!u) {
      c->immediate_reply() += upstream_error(kReconnecting);
      return true;
    }
    conns.push_back(u);
  }
  auto* g = new Gather{c, c->reserve_slot(), merge, conns.size(), {}, {}};
  g->replies.resize(conns.size());
  c->ref();
  c->flights_waiting++;  // later requests wait for the merged answer
  srv.stats().forwarded_commands++;
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i]->request(once_sink([g, i](std::string_view reply, bool failed) {
                        if (failed && g->failure.empty()) g->failure = upstream_error(reply);
                        else g->replies[i].assign(reply);
                        if (--g->left == 0) finish(g);
                      }),
                      raw, 0);
  }
  return true;
}

}  // namespace respite
