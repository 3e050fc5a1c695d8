// Redis Cluster: commands that every master must run, or whose answer is the whole cluster's
// (front/cluster_broadcast.cc).
#pragma once

#include "proxy/front/command_table.h"
#include "resp/request_parser.h"

namespace respite {

class Server;
class ClientConn;

// INFO (numeric fields of the clients, memory, stats and keyspace sections summed over the
// masters), and the commands that change every node's state: CONFIG SET and RESETSTAT,
// SCRIPT LOAD and FLUSH, FUNCTION LOAD, DELETE, FLUSH and RESTORE (each master runs it; the
// answer is the first master's when all agree, else the first that differs). True when
// answered here (or held: the client stalls behind its requests in flight).
bool cluster_broadcast(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo* ci);

// INFO replies (their text) merged as one server's: exposed for the unit test.
std::string merge_info(const std::vector<std::string>& texts);

}  // namespace respite
