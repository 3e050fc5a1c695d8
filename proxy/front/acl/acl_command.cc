// ACL <sub>, answered by respite for its own users (never forwarded: the upstream's users are
// not the clients'). The users are fixed at start, so SETUSER, DELUSER, SAVE and LOAD are
// refused with a pointer to the file that defines them.
#include <fmt/format.h>

#include <random>

#include "proxy/front/acl/acl.h"
#include "proxy/front/local_commands.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {

void err(std::string& o, ClientConn* c, std::string_view msg) { resp::Writer(o, c->proto).error(msg); }
void arity_err(std::string& o, ClientConn* c, std::string_view name) {
  err(o, c, fmt::format("ERR wrong number of arguments for '{}' command", lower(name)));
}

std::string_view reason_name(AclDenial d) {
  switch (d) {
    case AclDenial::Key: return "key";
    case AclDenial::Channel: return "channel";
    case AclDenial::Auth: return "auth";
    default: return "command";
  }
}

void getuser(Server& srv, ClientConn* c, std::string& o, std::string_view name) {
  resp::Writer w(o, c->proto);
  const AclUser* u = srv.shared()->acl.find(name);
  if (u == nullptr) return w.null();
  // Redis 7.0's shape: a map of six fields, flags a set, keys and channels one string each.
  w.map(6);
  w.bulk("flags");
  auto flags = u->flags();
  w.set(flags.size());
  for (std::string_view f : flags) w.bulk(f);
  w.bulk("passwords");
  w.array(u->passwords().size());
  for (const std::string& p : u->passwords()) w.bulk(p);
  w.bulk("commands");
  w.bulk(u->describe_commands());
  w.bulk("keys");
  w.bulk(u->describe_keys());
  w.bulk("channels");
  w.bulk(u->describe_channels());
  w.bulk("selectors");
  w.array(0);
}

void acl_log(Server& srv, ClientConn* c, std::string& o, const resp::Frame& f) {
  Acl& acl = srv.shared()->acl;
  long long count = 10;
  if (f.argc() > 3)  // Redis 7.0 takes LOG [count|RESET] and nothing more
    return err(o, c, "ERR unknown subcommand or wrong number of arguments for 'LOG'. Try ACL HELP.");
  if (f.argc() == 3) {
    if (ieq(f.arg(2), "reset")) {
      acl.log_reset();
      return resp::Writer(o, c->proto).simple("OK");
    }
    if (!parse_ll(f.arg(2), count)) return err(o, c, "ERR value is not an integer or out of range");
    if (count < 0) count = 0;
  }
  std::vector<AclLogEntry> entries = acl.log_entries(static_cast<size_t>(count));
  const uint64_t now = srv.now();
  resp::Writer w(o, c->proto);
  w.array(entries.size());
  for (const AclLogEntry& e : entries) {
    w.map(7);
    w.bulk("count");
    w.integer(static_cast<int64_t>(e.count));
    w.bulk("reason");
    w.bulk(reason_name(e.reason));
    w.bulk("context");
    w.bulk(e.in_multi ? "multi" : "toplevel");
    w.bulk("object");
    w.bulk(e.object);
    w.bulk("username");
    w.bulk(e.username);
    w.bulk("age-seconds");
    w.dbl(static_cast<double>(now >= e.ctime_ms ? now - e.ctime_ms : 0) / 1000.0);
    w.bulk("client-info");
    w.bulk(e.client_info);
  }
}

void cat(ClientConn* c, std::string& o, const resp::Frame& f) {
  resp::Writer w(o, c->proto);
  if (f.argc() == 2) {
    w.array(std::size(kAclCategoryNames));
    for (std::string_view n : kAclCategoryNames) w.bulk(n);
    return;
  }
  int b = acl_category_bit(f.arg(2));
  if (b < 0) return err(o, c, fmt::format("ERR Unknown category '{}'", f.arg(2)));
  std::vector<std::string_view> names;
  for (size_t i = 0; i < command_count(); ++i)
    if (command_at(i).acl_categories & (uint32_t{1} << b)) names.push_back(command_at(i).name);
  w.array(names.size());
  for (std::string_view n : names) w.bulk(n);
}

void genpass(ClientConn* c, std::string& o, const resp::Frame& f) {
  long long bits = 256;
  if (f.argc() == 3 && (!parse_ll(f.arg(2), bits) || bits <= 0 || bits > 4096))
    return err(o, c, "ERR ACL GENPASS argument must be the number of bits for the output password, "
                    "a positive number up to 4096");
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(static_cast<size_t>((bits + 3) / 4), '0');
  for (char& ch : out) ch = kHex[rd() & 15];
  resp::Writer(o, c->proto).bulk(out);
}

// ACL DRYRUN user command [arg ...]: Redis 7.0's answers, the check being Acl::check on the
// command re-parsed from the arguments.
void dryrun(Server& srv, ClientConn* c, std::string& o, const resp::Frame& f) {
  const AclUser* u = srv.shared()->acl.find(f.arg(2));
  if (u == nullptr) return err(o, c, fmt::format("ERR User '{}' not found", f.arg(2)));
  std::string bytes = fmt::format("*{}\r\n", f.argc() - 3);
  for (size_t i = 3; i < f.argc(); ++i)
    bytes += fmt::format("${}\r\n{}\r\n", f.arg(i).size(), f.arg(i));
  resp::RequestParser parser;
  resp::Frame cmd;
  if (parser.parse(bytes, cmd).status != resp::Status::Ok || cmd.argc() == 0)
    return err(o, c, "ERR syntax error");
  const CommandInfo* ci = lookup_command(cmd);
  if (ci == nullptr) return err(o, c, fmt::format("ERR Command '{}' not found", cmd.arg(0)));
  if (!arity_ok(*ci, cmd.argc())) return arity_err(o, c, ci->name);
  std::vector<AclKey> scratch;
  AclVerdict v = Acl::check(*u, ci, cmd, scratch);
  resp::Writer w(o, c->proto);
  switch (v.why) {
    case AclDenial::None:
      return w.simple("OK");
    case AclDenial::Key:
      return w.bulk(fmt::format("This user has no permissions to access the '{}' key",
                                cmd.arg(v.arg)));
    case AclDenial::Channel:
      return w.bulk(fmt::format("This user has no permissions to access the '{}' channel",
                                cmd.arg(v.arg)));
    default:
      return w.bulk(fmt::format("This user has no permissions to run the '{}' command", ci->name));
  }
}

constexpr std::string_view kHelp[] = {
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "SETUSER, DELUSER, SAVE, LOAD",
    "    Not supported by respite: its users come from `user` lines in its config file or",
    "    from --aclfile, read at start.",
    "HELP",
    "    Print this help.",
};

void acl_reply(Server& srv, ClientConn* c, const resp::Frame& f, std::string& o) {
  const CommandInfo* ci = lookup_command(f);
  if (f.argc() < 2) return arity_err(o, c, "acl");
  if (ci == nullptr || ci->name == "acl")
    return err(o, c, fmt::format("ERR unknown subcommand '{}'. Try ACL HELP.", f.arg(1)));
  if (!arity_ok(*ci, f.argc())) return arity_err(o, c, ci->name);
  std::string_view sub = ci->name.substr(4);
  const Acl& acl = srv.shared()->acl;
  resp::Writer w(o, c->proto);
  if (sub == "whoami") return w.bulk(c->user->name());
  if (sub == "users" || sub == "list") {
    auto users = acl.sorted();
    w.array(users.size());
    for (const AclUser* u : users) w.bulk(sub == "users" ? u->name() : u->describe());
    return;
  }
  if (sub == "getuser") return getuser(srv, c, o, f.arg(2));
  if (sub == "log") return acl_log(srv, c, o, f);
  if (sub == "cat") return cat(c, o, f);
  if (sub == "genpass") return genpass(c, o, f);
  if (sub == "dryrun") return dryrun(srv, c, o, f);
  if (sub == "help") {
    w.array(std::size(kHelp));
    for (std::string_view l : kHelp) w.simple(l);
    return;
  }
  err(o, c, fmt::format("ERR ACL {} is not supported by respite: its users are defined by `user` "
                       "lines in the config file or by --aclfile, read at start",
                       sub));
}

}  // namespace

void acl_command(Server& srv, ClientConn* c, const resp::Frame& f, std::string* out) {
  std::string own;
  acl_reply(srv, c, f, out ? *out : own);
  if (!out) c->immediate_reply().append(own);
}

}  // namespace respite
