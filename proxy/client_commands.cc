// Connection-level commands respite answers itself: HELLO, AUTH and the CLIENT family. The
// client's identity (id, name, db, protocol) is respite's, not its upstream connection's.
#include <fmt/format.h>

#include "proxy/local_commands.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/text.h"
#include "resp/reply_writer.h"

namespace respite {

void error(ClientConn* c, std::string_view msg) { resp::Writer(c->immediate_reply(), c->proto).error(msg); }

void arity_error(ClientConn* c, std::string_view name) {
  error(c, fmt::format("ERR wrong number of arguments for '{}' command", lower(name)));
}

// ---- HELLO / AUTH ----

static bool check_password(Server& srv, std::string_view user, std::string_view pass) {
  return user == "default" && pass == srv.config().requirepass;
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
    } else {
      error(c, fmt::format("ERR Syntax error in HELLO option '{}'", f.arg(i)));
      return true;
    }
  }
  if (has_auth) {
    if (srv.config().requirepass.empty() ? user != "default" : !check_password(srv, user, pass)) {
      error(c, "WRONGPASS invalid username-password pair or user is disabled.");
      return true;
    }
    c->set_authenticated(true);
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

void auth_command(Server& srv, ClientConn* c, const resp::Frame& f) {
  if (f.argc() < 2) return arity_error(c, "auth");
  if (f.argc() > 3) return error(c, "ERR syntax error");
  std::string_view user = f.argc() == 3 ? f.arg(1) : std::string_view("default");
  std::string_view pass = f.arg(f.argc() - 1);
  if (srv.config().requirepass.empty()) {
    if (f.argc() == 2) {
      return error(c, "ERR AUTH <password> called without any password configured for the default "
                      "user. Are you sure your configuration is correct?");
    }
    if (user == "default") {
      resp::Writer(c->immediate_reply(), c->proto).simple("OK");
      return;
    }
    return error(c, "WRONGPASS invalid username-password pair or user is disabled.");
  }
  if (!check_password(srv, user, pass)) {
    log(LogLevel::Verbose, "client id={} addr={}: wrong password", c->id, c->peer);
    return error(c, "WRONGPASS invalid username-password pair or user is disabled.");
  }
  c->set_authenticated(true);
  resp::Writer(c->immediate_reply(), c->proto).simple("OK");
}

// ---- CLIENT ----

static std::string client_info_line(Server& srv, ClientConn* c) {
  uint64_t now = srv.now();
  std::string flags;
  if (c->in_multi) flags.push_back('x');
  if (c->streaming) flags.push_back('P');
  if (flags.empty()) flags.push_back('N');
  return fmt::format(
      "id={} addr={} laddr={}:{} fd=-1 name={} age={} idle={} flags={} db={} sub=0 psub=0 "
      "ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 "
      "tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
      c->id, c->peer, srv.config().bind, srv.config().port, c->name, (now - c->created_ms) / 1000,
      (now - c->last_cmd_ms) / 1000, flags, c->db, c->in_multi ? 0 : -1, c->proto, c->lib_name,
      c->lib_ver);
}

// Returns true when handled locally.
bool client_command(Server& srv, ClientConn* c, const resp::Frame& f) {
  if (f.argc() < 2) return false;
  std::string_view sub = f.arg(1);
  // Only the subcommands answered here take a reply slot; the rest are forwarded.
  auto w = [c] { return resp::Writer(c->immediate_reply(), c->proto); };
  if (ieq(sub, "id")) {
    if (f.argc() != 2) arity_error(c, "client|id");
    else w().integer(static_cast<int64_t>(c->id));
  } else if (ieq(sub, "getname")) {
    if (f.argc() != 2) arity_error(c, "client|getname");
    else if (c->name.empty()) w().null();
    else w().bulk(c->name);
  } else if (ieq(sub, "setname")) {
    if (f.argc() != 3) return arity_error(c, "client|setname"), true;
    for (char ch : f.arg(2)) {
      if (ch < '!' || ch > '~') {
        w().error("ERR Client names cannot contain spaces, newlines or special characters.");
        return true;
      }
    }
    c->name = std::string(f.arg(2));
    w().simple("OK");
  } else if (ieq(sub, "setinfo")) {
    if (f.argc() != 4) return arity_error(c, "client|setinfo"), true;
    for (char ch : f.arg(3)) {
      if (ch < '!' || ch > '~') {
        w().error(fmt::format("ERR {} cannot contain spaces, newlines or special characters.",
                            lower(f.arg(2))));
        return true;
      }
    }
    if (ieq(f.arg(2), "lib-name")) c->lib_name = std::string(f.arg(3));
    else if (ieq(f.arg(2), "lib-ver")) c->lib_ver = std::string(f.arg(3));
    else {
      w().error(fmt::format("ERR Unrecognized option '{}'", f.arg(2)));
      return true;
    }
    w().simple("OK");
  } else if (ieq(sub, "info")) {
    if (f.argc() != 2) arity_error(c, "client|info");
    else w().verbatim("txt", client_info_line(srv, c));
  } else if (ieq(sub, "reply")) {
    if (f.argc() != 3) return arity_error(c, "client|reply"), true;
    if (ieq(f.arg(2), "on")) {
      c->reply_mode = ClientConn::ReplyMode::On;
      w().simple("OK");
    } else if (ieq(f.arg(2), "off")) {
      c->reply_mode = ClientConn::ReplyMode::Off;
    } else if (ieq(f.arg(2), "skip")) {
      if (c->reply_mode == ClientConn::ReplyMode::On) c->reply_mode = ClientConn::ReplyMode::Skip;
    } else {
      w().error("ERR syntax error");
    }
  } else {
    // Not ours: the writer reserved nothing (it only appends when used), forward it.
    return false;
  }
  return true;
}
}  // namespace respite
