// WriteLedger: which reads a replica may answer after writes respite acknowledged.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/upstream/replica_monitor.h"
#include "proxy/upstream/replication.h"

using respite::WriteLedger;

namespace {

bool may(const WriteLedger& l, size_t i, uint32_t db, std::vector<std::string_view> keys) {
  return l.may_read(i, db, keys, true);
}

}  // namespace

TEST_CASE("ledger: a written key waits for the offset of the next primary poll") {
  WriteLedger l(2);
  CHECK(may(l, 0, 0, {"k"}));  // nothing written: every replica may answer
  CHECK(l.may_read(0, 0, {}, false));
  l.set_healthy(0, true);
  l.set_healthy(1, true);

  l.wrote(0, "k");  // acknowledged before poll 1 is sent: poll 1's offset covers it
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  CHECK(may(l, 0, 0, {"other"}));     // other keys still go to the replica
  CHECK(may(l, 0, 1, {"k"}));         // the same name in another db
  CHECK_FALSE(l.may_read(0, 0, {}, false));  // a read of unknown keys waits for everything
  CHECK(l.behind());

  const uint64_t m1 = l.next_mark();
  CHECK(m1 == 1);
  l.replica_offset(0, 500, "r");  // before the primary's offset is known: applies nothing
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  l.primary_offset(m1, 1000, "r");
  l.replica_offset(0, 999, "r");
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  CHECK(l.health(0).lag == 1);
  l.replica_offset(0, 1000, "r");
  CHECK(may(l, 0, 0, {"k"}));
  CHECK_FALSE(may(l, 1, 0, {"k"}));  // replica 1 has not reported
  CHECK(l.pending_slots() == 1);     // replica 1 has not applied it
  l.replica_offset(1, 1200, "r");
  CHECK(may(l, 1, 0, {"k"}));
  CHECK(l.pending_slots() == 0);  // every replica has it
  CHECK_FALSE(l.behind());
}

TEST_CASE("ledger: a write acknowledged after a poll was sent waits for the next poll") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  const uint64_t m1 = l.next_mark();  // poll 1 is out
  l.wrote(0, "k");                    // acknowledged after it was sent: poll 2's offset covers it
  l.primary_offset(m1, 100, "r");
  l.replica_offset(0, 100, "r");
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  const uint64_t m2 = l.next_mark();
  l.primary_offset(m2, 150, "r");
  l.replica_offset(0, 149, "r");
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  l.replica_offset(0, 150, "r");
  CHECK(may(l, 0, 0, {"k"}));
}

TEST_CASE("ledger: writes of unknown keys make every read wait") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  l.wrote_all();
  CHECK_FALSE(may(l, 0, 0, {"any"}));
  CHECK_FALSE(l.may_read(0, 0, {}, false));
  CHECK(l.pending_slots() == 1);  // PROXY INFO says something is pending
  const uint64_t m = l.next_mark();
  l.primary_offset(m, 10, "r");
  l.replica_offset(0, 10, "r");
  CHECK(may(l, 0, 0, {"any"}));
  CHECK(l.may_read(0, 0, {}, false));
  CHECK(l.pending_slots() == 0);
}

TEST_CASE("ledger: a read of several keys waits if any of them was written") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  l.wrote(3, "b");
  CHECK(may(l, 0, 3, {"a", "c"}));
  CHECK_FALSE(may(l, 0, 3, {"a", "b", "c"}));
}

TEST_CASE("ledger: the record is a fixed table: keys sharing a slot only wait for each other") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  // More keys than slots: every slot is taken, so even a key never written waits (for the
  // primary's next offset), which is the conservative side.
  const size_t n = 4 * WriteLedger::kSlots;
  for (size_t i = 0; i < n; ++i) l.wrote(0, "k" + std::to_string(i));
  CHECK(l.pending_slots() > WriteLedger::kSlots * 9 / 10);
  CHECK(l.pending_slots() <= WriteLedger::kSlots);
  CHECK_FALSE(may(l, 0, 0, {"never-written"}));
  CHECK_FALSE(may(l, 0, 0, {"k1"}));
  const uint64_t m = l.next_mark();
  l.primary_offset(m, 7, "r");
  l.replica_offset(0, 7, "r");
  CHECK(may(l, 0, 0, {"k1"}));
  CHECK(may(l, 0, 0, {"never-written"}));
  CHECK(l.pending_slots() == 0);
  // A few keys written since: most other keys are in other slots and may go to the replica.
  for (int i = 0; i < 100; ++i) l.wrote(0, "w" + std::to_string(i));
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += may(l, 0, 0, {"other" + std::to_string(i)});
  CHECK(allowed >= 990);
  for (int i = 0; i < 100; ++i) CHECK_FALSE(may(l, 0, 0, {"w" + std::to_string(i)}));
}

TEST_CASE("ledger: older primary offsets beyond the bound are subsumed by newer ones") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  l.wrote(0, "k");
  uint64_t last = 0;
  for (size_t i = 0; i < WriteLedger::kMaxPolls + 10; ++i) {
    last = l.next_mark();
    l.primary_offset(last, static_cast<int64_t>(100 + i), "r");
  }
  l.replica_offset(0, 99, "r");  // behind even the first poll
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  l.replica_offset(0, static_cast<int64_t>(100 + WriteLedger::kMaxPolls + 9), "r");
  CHECK(may(l, 0, 0, {"k"}));
  CHECK(l.health(0).applied == last);
}

TEST_CASE("ledger: a replica that was down does not hold the record, and answers nothing until it caught up") {
  WriteLedger l(2);
  l.set_healthy(0, true);
  l.set_healthy(1, true);
  l.set_healthy(1, false);  // replica 1 goes down
  l.wrote(0, "k");
  const uint64_t m = l.next_mark();
  l.primary_offset(m, 100, "r");
  l.replica_offset(0, 100, "r");
  CHECK(l.pending_slots() == 0);  // replica 0 has it; the one that is down is not counted
  l.set_healthy(1, true);         // back, but behind
  l.replica_offset(1, 50, "r");
  CHECK_FALSE(may(l, 1, 0, {"k"}));      // the forgotten write is covered by its floor...
  CHECK_FALSE(may(l, 1, 0, {"other"}));  // ...which holds every read back
  l.replica_offset(1, 100, "r");
  CHECK(may(l, 1, 0, {"k"}));
  CHECK(may(l, 1, 0, {"other"}));
}

TEST_CASE("ledger: a replica's offset counts only in the primary's replication history") {
  WriteLedger l(1);
  l.set_healthy(0, true);
  l.wrote(0, "k");
  const uint64_t m = l.next_mark();
  l.primary_offset(m, 100, "new-primary");
  l.replica_offset(0, 500, "old-primary");  // larger, but another history
  CHECK_FALSE(may(l, 0, 0, {"k"}));
  l.replica_offset(0, 100, "new-primary");
  CHECK(may(l, 0, 0, {"k"}));
}

TEST_CASE("info_value reads a field of an INFO reply") {
  std::string_view info =
      "$80\r\n# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\n"
      "xslave_repl_offset:7\r\n";
  CHECK(respite::info_value(info, "role") == "slave");
  CHECK(respite::info_value(info, "master_link_status") == "up");
  CHECK(respite::info_value(info, "slave_repl_offset") == "42");
  CHECK(respite::info_value(info, "loading").empty());
  CHECK(respite::info_value("", "role").empty());
  CHECK(respite::info_value("role", "role").empty());  // no colon
}
