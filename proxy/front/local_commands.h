// Connection-level commands respite answers itself: HELLO, AUTH and the CLIENT family
// (client_commands.cc), and the reply helpers they share with dispatch.
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

// HELLO: true when answered here (false: forwarded, e.g. a protocol switch of a pinned client).
bool hello_command(Server& srv, ClientConn* c, const resp::Frame& f);
void auth_command(Server& srv, ClientConn* c, const resp::Frame& f);
// CLIENT <sub>: true when answered here, false when the subcommand is the upstream's. `which`:
// the subcommand's Local role (Local::ClientId ...).
bool client_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which);

}  // namespace respite
