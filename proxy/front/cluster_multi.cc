// Transactions with Redis Cluster. Every key of a transaction must be in one slot, served by
// one node, which a MULTI alone does not name: respite answers MULTI itself and pins the
// client when the transaction's first command with a key arrives, to the node of that
// command's slot, sending MULTI there first, then the keyless commands queued before it
// (answered QUEUED here; EXEC with no keyed command sends them to any master). A later command with a key in another slot is refused with
// CROSSSLOT (as Redis Cluster refuses it), which makes EXEC abort. WATCH needs nothing here:
// its keys route the pin it makes like any keyed command's.
#include "proxy/front/dispatch.h"
#include "proxy/front/local_commands.h"
#include "proxy/front/server.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {
// The answers to MULTI and to the held commands, already given to the client (one object for
// every reply: nothing to free).
class Answered final : public ReplySink {
 public:
  void on_reply(std::string_view, bool) override {}
};
Answered answered;

void end_transaction(ClientConn* c) {
  c->in_multi = c->multi_deferred = c->multi_failed = c->multi_barrier = false;
  c->multi_slot = -1;
  c->multi_held.clear();
  c->multi_held_count = 0;
  c->multi_count = 0;
  c->multi_select_db = -1;
  delete c->multi_writes;
  c->multi_writes = nullptr;
}
}  // namespace

bool Dispatch::cluster_transaction(ClientConn* c, const resp::Frame& f, const CommandInfo* ci,
                                   Pin pin) {
  if (!c->in_multi) {
    // MULTI: answered here unless a WATCH already pinned the client (then MULTI goes there).
    if (c->pinned) return false;
    c->in_multi = c->multi_deferred = true;
    c->multi_failed = c->multi_barrier = false;
    c->multi_slot = -1;
    c->multi_select_db = -1;
    c->multi_db = c->db;
    c->multi_count = 0;
    resp::Writer(c->immediate_reply(), c->proto).simple("OK");
    return true;
  }
  const int slot = keys_slot(f, ci);
  if (c->multi_deferred) {
    switch (pin) {
      case Pin::Exec:
        if (c->multi_failed)
          error(c, "EXECABORT Transaction discarded because of previous errors.");
        else if (c->multi_held_count == 0)
          resp::Writer(c->immediate_reply(), c->proto).array(0);  // nothing was queued
        else
          break;  // keyless commands only: they run on any master
        end_transaction(c);
        return true;
      case Pin::Discard:
        end_transaction(c);
        resp::Writer(c->immediate_reply(), c->proto).simple("OK");
        return true;
      case Pin::Multi:
        error(c, "ERR MULTI calls can not be nested");
        return true;
      case Pin::Watch:
        error(c, "ERR WATCH inside MULTI is not allowed");
        return true;
      default:
        break;
    }
  }
  if (slot == -2 || (slot >= 0 && c->multi_slot >= 0 && slot != c->multi_slot)) {
    c->multi_failed = true;  // as Redis flags a transaction with a refused command
    error(c, "CROSSSLOT Keys in request don't hash to the same slot");
    return true;
  }
  if (slot >= 0) c->multi_slot = slot;
  if (!c->multi_deferred) return false;
  if (slot < 0 && pin != Pin::Exec) {
    // No key yet: held until one names the node. A keyless command that writes (FLUSHALL,
    // SCRIPT ...) makes EXEC's reply flush the cache, as the forwarded way would.
    if (!ci || ci->is(kWrite) || ci->role.flush != Flush::Keys) {
      if (!c->multi_writes) c->multi_writes = new WriteInvalidation;
      c->multi_writes->scope = WriteInvalidation::Scope::All;
    }
    std::string encoded;
    c->multi_held.append(wire(f, encoded));
    c->multi_held_count++;
    c->multi_count++;
    resp::Writer(c->immediate_reply(), c->proto).simple("QUEUED");
    return true;
  }
  // The transaction's first command: pin to its slot's node (any master when it has no key)
  // and open the transaction there.
  Router& router = srv_.router();
  Node* node = slot >= 0 ? router.slot_node(static_cast<uint16_t>(slot)) : router.any_master();
  UpstreamConn* u = srv_.open_pinned(c, node, -1);
  if (!u) {
    c->multi_failed = true;
    c->immediate_reply() += upstream_error(kReconnecting);
    return true;
  }
  c->pinned = u;
  c->multi_deferred = false;
  // Its +OK was given already, and QUEUED for the held commands. An error instead (the
  // connection failing) fails what follows. A held command Redis refuses (arity) makes EXEC
  // answer EXECABORT there, as it would have.
  u->request(&answered, "*1\r\n$5\r\nMULTI\r\n", c->db);
  if (c->multi_held_count > 0) {
    u->request(&answered, c->multi_held, c->db, c->multi_held_count);
    c->multi_held.clear();
    c->multi_held_count = 0;
  }
  return false;
}

}  // namespace respite
