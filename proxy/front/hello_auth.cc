// HELLO and AUTH, answered by respite (the client's identity, protocol and authentication are
// respite's, not its upstream connection's), the reply helpers dispatch shares, and what respite
// learns of its upstream connections (the upstream's version, a pinned connection's client id).
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "proxy/front/local_commands.h"
#include "proxy/ops/log.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"
#include "resp/value.h"

namespace respite {

void error(ClientConn* c, std::string_view msg) { resp::Writer(c->immediate_reply(), c->proto).error(msg); }

void arity_error(ClientConn* c, std::string_view name) {
  error(c, fmt::format("ERR wrong number of arguments for '{}' command", lower(name)));
}

// ---- HELLO / AUTH ----

// Redis's ACLAuthenticateUser: on success the client is `user` and authenticated; on failure
// the ACL LOG gets an "auth" entry naming the user tried, and false is returned (WRONGPASS).
static bool authenticate(Server& srv, ClientConn* c, std::string_view user, std::string_view pass) {
  const Acl& acl = srv.shared()->acl;
  if (const AclUser* u = acl.authenticate(user, pass)) {
    c->set_user(u);
    c->set_authenticated(true);
    return true;
  }
  AclLogEntry e;
  e.reason = AclDenial::Auth;
  e.object = "auth";
  e.username = std::string(user);
  e.ctime_ms = srv.now();
  e.client_info = acl_client_info(srv, c, "auth");
  srv.shared()->acl.log(std::move(e));
  log(LogLevel::Verbose, "client id={} addr={}: wrong password", c->id, c->peer);
  return false;
}

// Redis's validateClientName: printable ASCII without spaces ('!' to '~'); empty is allowed.
bool valid_client_name(std::string_view name) {
  for (char ch : name)
    if (ch < '!' || ch > '~') return false;
  return true;
}


static void hello_reply(Server& srv, ClientConn* c) {
  resp::Writer w(c->immediate_reply(), c->proto);
  w.map(7);
  w.bulk("server");
  w.bulk("redis");
  w.bulk("version");
  w.bulk(srv.upstream_version);
  w.bulk("proto");
  w.integer(c->proto);
  w.bulk("id");
  w.integer(static_cast<int64_t>(c->id));
  w.bulk("mode");
  w.bulk("standalone");
  w.bulk("role");
  w.bulk("master");
  w.bulk("modules");
  w.array(0);
}

// Returns true when handled locally.
bool hello_command(Server& srv, ClientConn* c, const resp::Frame& f) {
  long long ver = c->proto;
  if (f.argc() >= 2) {
    if (!parse_ll(f.arg(1), ver)) {
      error(c, "ERR Protocol version is not an integer or out of range");
      return true;
    }
    if (ver < 2 || ver > 3) {
      error(c, "NOPROTO unsupported protocol version");
      return true;
    }
  }
  std::string_view user, pass, name;
  bool has_auth = false, has_name = false;
  for (size_t i = 2; i < f.argc(); ++i) {
    if (ieq(f.arg(i), "auth") && i + 2 < f.argc()) {
      user = f.arg(i + 1);
      pass = f.arg(i + 2);
      has_auth = true;
      i += 2;
    } else if (ieq(f.arg(i), "setname") && i + 1 < f.argc()) {
      name = f.arg(i + 1);
      has_name = true;
      i += 1;
      // As Redis: the name is checked where it is parsed, before AUTH and the other options;
      // before 7.2 it is also set right there (even if a later option fails), from 7.2 once
      // the client is authenticated.
      if (!valid_client_name(name)) {
        error(c, kBadClientName);
        return true;
      }
      if (!version_at_least(srv.upstream_version, 7, 2)) c->name = std::string(name);
    } else {
      error(c, fmt::format("ERR Syntax error in HELLO option '{}'", f.arg(i)));
      return true;
    }
  }
  if (has_auth && !authenticate(srv, c, user, pass)) {
    error(c, "WRONGPASS invalid username-password pair or user is disabled.");
    return true;
  }
  if (!c->authenticated) {
    error(c, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
             "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
             "select the RESP protocol version at the same time");
    return true;
  }
  if (has_name) c->name = std::string(name);
  if (c->pinned && ver != c->proto) {
    // The pinned connection must speak the client's protocol: let the upstream switch it.
    c->proto = static_cast<int>(ver);
    return false;
  }
  c->proto = static_cast<int>(ver);
  hello_reply(srv, c);
  return true;
}

void auth_command(Server& srv, ClientConn* c, const resp::Frame& f, std::string* out) {
  std::string own;
  resp::Writer w(out ? *out : own, c->proto);
  auto answer = [&] {
    if (!out) c->immediate_reply().append(own);
  };
  if (f.argc() < 2) {
    w.error("ERR wrong number of arguments for 'auth' command");
  } else if (f.argc() > 3) {
    w.error("ERR syntax error");
  } else if (f.argc() == 2 && srv.shared()->acl.default_user().nopass()) {
    w.error("ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?");
  } else if (!authenticate(srv, c, f.argc() == 3 ? f.arg(1) : std::string_view("default"),
                           f.arg(f.argc() - 1))) {
    w.error("WRONGPASS invalid username-password pair or user is disabled.");
  } else {
    w.simple("OK");
  }
  answer();
}

// ---- the upstream's version, and the upstream id of pinned connections ----


void Server::read_upstream_version(UpstreamConn* u) {
  u->request(once_sink([this](std::string_view reply, bool failed) {
               if (failed || reply.empty() || reply[0] == '-') return;
               constexpr std::string_view kField = "redis_version:";
               size_t at = reply.find(kField);
               if (at == std::string_view::npos) return;
               at += kField.size();
               size_t end = reply.find_first_of("\r\n", at);
               if (end == std::string_view::npos || end == at) return;
               upstream_version.assign(reply.substr(at, end - at));
             }),
             "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n", 0);
}

void Server::learn_upstream_client_id(UpstreamConn* u) {
  u->request(once_sink([u](std::string_view reply, bool failed) {
               resp::Value v;
               if (!failed && resp::decode(reply, v).status == resp::ScanResult::Status::Ok &&
                   v.type == ':')
                 u->upstream_client_id = v.integer;
             }),
             "*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n", 0);
}

}  // namespace respite
