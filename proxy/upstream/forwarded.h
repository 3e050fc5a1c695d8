// A client's request on its way upstream, as one handle: what the connection needs to send it,
// to relay its reply into the client's reply order, and, when the route may answer MOVED or
// ASK (Router::follows_redirects), to send it again to the node the reply names.
//
// The request's bytes are kept until its reply only when a retry is possible: with one node
// nothing is copied (the bytes go straight into the connection's output, as before).
#pragma once

#include <cstdint>
#include <string_view>

#include "resp/request_parser.h"

namespace respite {

class Node;

class Requester;
struct WriteInvalidation;

struct Forwarded {
  Requester* client = nullptr;
  uint64_t seq = 0;                    // the client's reply slot (kStreamSeq: streamed reply)
  std::string_view raw;                // one complete RESP request
  int db = 0;                          // the db it runs in (a shared connection SELECTs it)
  uint64_t answer_by = 0;              // loop ms the client gets a timeout error at; 0: untimed
  const resp::Frame* frame = nullptr;  // for the slow log's command name and first argument
  uint8_t after = 0;                   // UpstreamConn::kAfter* work on the reply
  bool write = false;                  // it may write (a failure says "may have been applied")
  int exec_db = -1;                    // kAfterExec: see UpstreamConn::Pending
  uint32_t exec_pos = 0;
  uint32_t exec_gen = 0;
  bool keep_for_retry = false;         // copy `raw` until the reply (MOVED/ASK may send it again)
  uint8_t redirects = 0;               // how often it was sent again already
  bool asked = false;                  // sent after ASKING (the slot's importing node)
};

// A request answered -MOVED or -ASK, given back to the layers above to send again.
struct Redirect {
  Requester* client;
  uint64_t seq;
  std::string_view raw;    // the request's bytes (valid during the call)
  int db;
  int proto;               // the protocol it was sent with (the client may have said HELLO since)
  uint64_t answer_by;
  bool write;
  bool ask;                // -ASK: the retry is preceded by ASKING, and the slot map stays
  std::string_view slot;   // as the reply gave it
  std::string_view target; // "host:port" (or "[ipv6]:port") as the reply gave it
  uint8_t redirects;       // sends so far, this one included
  // A write's second invalidation (or nullptr): whoever sends it again attaches it to the
  // retry (UpstreamConn::set_reply_invalidation), or applies it (invalidate_after_write).
  WriteInvalidation* inv;
  // -TRYAGAIN (a multi-key request while its slot moves): the same node, after a short wait.
  bool again = false;
  bool asked = false;  // this send went after ASKING
  // A read on a Cluster replica whose connection was lost (`target` empty): the replica's
  // master answers it (Router::master_of).
  const Node* lost = nullptr;
};

// Redis Cluster's clients give up after a few redirections; so does respite, relaying the last
// MOVED/ASK to the client.
inline constexpr uint8_t kMaxRedirects = 5;

// Parses "-MOVED <slot> <host:port>\r\n" or "-ASK <slot> <host:port>\r\n"; false for any other
// reply (the fields are then untouched).
inline bool parse_redirect(std::string_view reply, bool& ask, std::string_view& slot,
                           std::string_view& target) {
  std::string_view rest;
  if (reply.substr(0, 7) == "-MOVED ") {
    ask = false;
    rest = reply.substr(7);
  } else if (reply.substr(0, 5) == "-ASK ") {
    ask = true;
    rest = reply.substr(5);
  } else {
    return false;
  }
  size_t end = rest.find('\r');
  if (end == std::string_view::npos) return false;
  rest = rest.substr(0, end);
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= rest.size()) return false;
  slot = rest.substr(0, sp);
  target = rest.substr(sp + 1);
  return target.find(' ') == std::string_view::npos;
}

}  // namespace respite
