// Dispatch: what happens to one parsed request of a client. One lookup in the command table
// decides: answered by respite (local commands), answered by the cache path (GET, MGET), or
// forwarded (front/forward.cc): on the client's pinned connection, on a new pinned one when the
// command starts connection state, else on the shared connection of the node the router names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/cachepath/cache_path.h"
#include "proxy/front/command_table.h"
#include "resp/request_parser.h"

namespace respite {

class ClientConn;
class Server;
struct CommandInfo;

class Dispatch {
 public:
  explicit Dispatch(Server& srv) : srv_(srv) {}
  Dispatch(const Dispatch&) = delete;
  Dispatch& operator=(const Dispatch&) = delete;

  void dispatch(ClientConn* c, const resp::Frame& f);
  // The bytes of the request being dispatched as the upstream must get them: its own, or
  // re-encoded into `encoded` (an inline request; a renamed command under its own name; HELLO
  // without the AUTH and SETNAME respite answered itself).
  std::string_view wire(const resp::Frame& f, std::string& encoded) const;
  // The command's name as the upstream must get it (its own under rename-command), for
  // requests re-encoded per cluster node.
  std::string_view wire_name(const resp::Frame& f) const {
    return original_name_.empty() ? f.arg(0) : original_name_;
  }
  // RESET's effect on respite's side: no pin, no transaction, db 0, RESP2, no name.
  void reset_client(ClientConn* c);

  // A request answered -MOVED/-ASK, sent again to the node the reply names (UpstreamHost::
  // redirect); false when that node is not known (the client then gets the reply).
  bool redirect(const Redirect& r);
  // Sends the requests answered -TRYAGAIN whose wait is over (the loop's timer).
  void retry_due(uint64_t now);
  // The loop is closing: the waiting retries are dropped (their clients are being closed).
  void drop_delayed();

 private:
  bool rate_allowed(ClientConn* c);
  // An error in the client's protocol, also while subscribed; a transaction being queued is
  // flagged to abort at EXEC (as Redis's rejectCommand).
  void refuse(ClientConn* c, std::string_view msg);
  // The ACL check of a restricted user's request (the command, its keys, its channels); on a
  // refusal the ACL LOG has an entry, the client its NOPERM reply, and false is returned.
  bool acl_allows(ClientConn* c, const resp::Frame& f, const CommandInfo* ci);
  // rename-command / deny-command (see build_names).
  void build_names();
  const std::string* renamed(std::string_view name) const;
  void unknown_command(ClientConn* c, const resp::Frame& f);
  void forward(ClientConn* c, const resp::Frame& f, const CommandInfo* ci);
  // Cluster: the slot of the request's keys into rr.slot; false when the request was taken
  // here: answered CROSSSLOT, split by slot or sent to every master (cluster_split.h).
  bool cluster_slot(ClientConn* c, const resp::Frame& f, const CommandInfo* ci, RouteRequest& rr);
  // Cluster transactions (front/cluster_multi.cc): MULTI answered here, the pin made by the
  // transaction's first command to its slot's node, CROSSSLOT for a key in another slot. True
  // when the request was answered here.
  bool cluster_transaction(ClientConn* c, const resp::Frame& f, const CommandInfo* ci, Pin pin);
  // The slot of the request's keys (-1: none; -2: they span slots).
  int keys_slot(const resp::Frame& f, const CommandInfo* ci);
  // The keys of a read the router may send to a replica (RouteRequest::keys, keys_known).
  void read_keys(const CommandInfo* ci, const resp::Frame& f, RouteRequest& rr);
  // A write about to be forwarded: what the command table says it writes, invalidated now.
  CachePath::WritePlan invalidate_before_write(ClientConn* c, const resp::Frame& f,
                                               const CommandInfo* ci);
  // SELECT beyond the databases known to exist, when the upstream does not say how many it has.
  void select_by_trying(ClientConn* c, int n);

  // Requests answered -TRYAGAIN, sent again to their node after kTryAgainMs.
  struct Delayed {
    Requester* client;  // holds a reference
    uint64_t seq;
    std::string raw;
    int db;
    int proto;
    uint64_t answer_by;
    bool write;
    std::string target;
    uint8_t redirects;
    WriteInvalidation* inv;
    uint64_t due_ms;
    bool asked;  // it went after ASKING (to a slot's importing node): so does the retry
  };
  std::vector<Delayed> delayed_;
  static constexpr uint64_t kTryAgainMs = 20;

  Server& srv_;
  std::vector<AclKey> acl_scratch_;
  bool names_built_ = false;
  std::vector<std::pair<std::string, std::string>> names_;  // client's name -> own ("" refused)
  std::string_view original_name_;  // this request's command was renamed: its own name
  // What goes upstream in this request's place: a pinned client's HELLO as HELLO <proto> only;
  // a SORT refused its BY/GET inside MULTI as a script answering SORT's error at EXEC.
  std::string wire_override_;
  int verified_db_max_ = 0;  // the highest db a SELECT was seen to work for (select_by_trying)
  std::vector<uint32_t> write_keys_scratch_;
  uint64_t next_fallback_log_ms_ = 0;  // --read-from replica with no replica up: logged
  std::vector<uint32_t> read_keys_scratch_;
  std::vector<std::string_view> read_key_views_;
};

}  // namespace respite
