// Commands respite answers itself: HELLO and AUTH (hello_auth.cc), the CLIENT family
// (client_command.cc), PROXY (proxy_command.cc), CLUSTER in cluster mode (cluster_command.cc),
// and the reply helpers they share with dispatch.
#pragma once

#include <string>
#include <string_view>

#include "proxy/front/command_table.h"
#include "resp/request_parser.h"

namespace respite {

class Server;
class ClientConn;

// An error reply in the client's protocol, in its place in the reply order.
void error(ClientConn* c, std::string_view msg);
// Redis's "ERR wrong number of arguments for '<name>' command".
void arity_error(ClientConn* c, std::string_view name);

// Redis's validateClientName: printable ASCII without spaces; and its error for one that is not.
bool valid_client_name(std::string_view name);
inline constexpr std::string_view kBadClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

// Redis's CLIENT LIST line of one client (ending in a newline); `cmd` its last command's name.
std::string client_info_line(Server& srv, ClientConn* c, std::string_view cmd);
// The same without the newline, as ACL LOG's client-info.
inline std::string acl_client_info(Server& srv, ClientConn* c, std::string_view cmd) {
  std::string s = client_info_line(srv, c, cmd);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// HELLO: true when answered here (false: forwarded, e.g. a protocol switch of a pinned client).
bool hello_command(Server& srv, ClientConn* c, const resp::Frame& f);
// AUTH; the reply goes to `out` when given (a streaming client's), else in the reply order.
void auth_command(Server& srv, ClientConn* c, const resp::Frame& f, std::string* out = nullptr);
// ACL <sub> (front/acl/acl_command.cc): respite's own users.
void acl_command(Server& srv, ClientConn* c, const resp::Frame& f, std::string* out = nullptr);
// CLIENT <sub>: true when answered here, false when the subcommand is the upstream's. `which`:
// the subcommand's Local role (Local::ClientId ...).
bool client_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which);
// PROXY <sub> (proxy_command.cc): `which` is the subcommand's Local role (Local::Proxy: none, or
// one PROXY lacks).
void proxy_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which);
// CLUSTER <sub> in cluster mode (cluster_command.cc): respite answers as a one-node cluster
// owning every slot, refuses what would change a cluster, and errs as Redis on arity and
// unknown subcommands. COUNTKEYSINSLOT/GETKEYSINSLOT never come here (Local::None).
void cluster_command(Server& srv, ClientConn* c, const resp::Frame& f);

}  // namespace respite
