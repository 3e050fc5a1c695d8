// GET /lookup?key=K[&db=N]: the value through the cache and its single-flight
// (CachePath::read_key), answered in the connection's order. See http_server.h for the statuses.
#include <charconv>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "proxy/http/http.h"
#include "proxy/http/http_conn.h"
#include "proxy/http/http_server.h"
#include "proxy/front/server.h"

namespace respite {

using http::kJson;

class HttpConn::PendingLookup final : public ValueReader {
 public:
  PendingLookup(HttpConn* c, uint64_t s, std::string k) : conn(c), seq(s), key(std::move(k)) {}
  void on_value(bool missing, std::string_view value, std::string_view error) override;

  HttpConn* conn;  // null once the connection closed
  uint64_t seq;
  std::string key;
};

void HttpConn::PendingLookup::on_value(bool missing, std::string_view value,
                                        std::string_view error) {
  if (conn) conn->lookup_done(this, missing, value, error);
  delete this;
}

void HttpConn::handle_lookup(uint64_t seq, std::string_view query, const AclUser* user) {
  std::vector<http::QueryParam> params;
  if (!http::parse_query(query, params)) {
    complete(seq, 400, kJson, http::json_error(400, "malformed percent-encoding in the query"));
    return;
  }
  const std::string* key = nullptr;
  const std::string* db_text = nullptr;
  for (const auto& p : params) {
    if (p.name == "key" || p.name == "db") {
      const std::string*& slot = p.name == "key" ? key : db_text;
      if (slot) {
        complete(seq, 400, kJson,
                 http::json_error(400, fmt::format("{} given more than once", p.name)));
        return;
      }
      slot = &p.value;
    }
  }
  if (!key) {
    complete(seq, 400, kJson, http::json_error(400, "missing key parameter"));
    return;
  }
  if (key->empty()) {
    complete(seq, 400, kJson, http::json_error(400, "empty key parameter"));
    return;
  }
  // As GET through the RESP port: the user may run GET and read the key, else no cache read.
  static const CommandInfo* kGet = lookup_command("get");
  if (user && !user->unrestricted() &&
      (!user->may_run(*kGet) || !user->may_access_key(*key, kKeyNeedsRead))) {
    complete(seq, 403, kJson,
             http::json_error(403, !user->may_run(*kGet)
                                       ? Acl::denial_text(AclDenial::Command, kGet, "get")
                                       : Acl::denial_text(AclDenial::Key, kGet, "get")));
    return;
  }
  Server* server = srv_->server();
  uint32_t db = 0;
  if (db_text) {
    auto [p, ec] = std::from_chars(db_text->data(), db_text->data() + db_text->size(), db);
    if (db_text->empty() || ec != std::errc() || p != db_text->data() + db_text->size() ||
        db >= static_cast<uint32_t>(server->config().databases)) {
      complete(seq, 400, kJson, http::json_error(400, "db must be a database number"));
      return;
    }
  }
  // Another database is reached through the RESP port with SELECT: the user must be allowed it.
  static const CommandInfo* kSelect = lookup_command("select");
  if (db != 0 && user && !user->unrestricted() && !user->may_run(*kSelect)) {
    complete(seq, 403, kJson,
             http::json_error(403, Acl::denial_text(AclDenial::Command, kSelect, "select")));
    return;
  }
  auto* lk = new PendingLookup(this, seq, *key);
  slots_[seq - head_seq_].lookup = lk;
  // The value may arrive right here (a cache hit), which completes the slot and frees `lk`.
  server->cache_path().read_key(db, *key, lk);
}

void HttpConn::lookup_done(PendingLookup* lk, bool missing, std::string_view value,
                           std::string_view error) {
  if (closing_ || lk->seq < head_seq_ || lk->seq - head_seq_ >= slots_.size()) return;
  Slot& slot = slots_[lk->seq - head_seq_];
  slot.lookup = nullptr;
  uint64_t max_value = srv_->server()->config().http_max_value;
  if (error.empty() && !missing && value.size() <= max_value) {
    // Kept as bytes; the JSON (up to 6 bytes per byte) is made when it is its turn to be written.
    slot.found = true;
    slot.ready = true;
    slot.key = std::move(lk->key);
    slot.value.assign(value);
    drain_ready();
    mark_dirty();
    return;
  }
  std::string body = "{";
  http::append_json_bytes_field(body, "key", lk->key);
  int status;
  if (!error.empty()) {
    // A Redis error reply ("-WRONGTYPE ...\r\n") or respite's own reason.
    std::string_view e = error;
    if (!e.empty() && e.front() == '-') e.remove_prefix(1);
    while (!e.empty() && (e.back() == '\n' || e.back() == '\r')) e.remove_suffix(1);
    // WRONGTYPE: the key exists but holds no string; the upstream itself is fine.
    status = e.rfind("WRONGTYPE", 0) == 0 ? 409 : 503;
    fmt::format_to(std::back_inserter(body), ", \"status\": {}, \"error\": ", status);
    http::append_json_string(body, e);
  } else if (missing) {
    status = 404;
    body += ", \"status\": 404, \"error\": \"not found\"";
  } else {
    status = 413;  // not encoded: a bound on the response
    fmt::format_to(std::back_inserter(body),
                   ", \"status\": 413, \"error\": \"value too large ({} bytes, http-max-value "
                   "{})\"",
                   value.size(), max_value);
  }
  body += "}";
  complete(lk->seq, status, kJson, body);
}

// {"key": K, "value": V, "status": 200}, headers and all, onto `out_`.
void HttpConn::render_found(Slot& s) {
  std::string body;
  body.reserve(s.key.size() + s.value.size() + 48);  // exact when nothing needs escaping
  body += '{';
  http::append_json_bytes_field(body, "key", s.key);
  body += ", ";
  http::append_json_bytes_field(body, "value", s.value);
  body += ", \"status\": 200}";
  http::append_response(out_, 200, kJson, body, s.head, s.persist);
}

// The connection closes first: each lookup frees itself when its value arrives.
void HttpConn::orphan_lookups() {
  for (Slot& s : slots_)
    if (s.lookup) s.lookup->conn = nullptr;
}

}  // namespace respite
