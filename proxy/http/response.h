// What the HTTP endpoint's responses are made of: the status line and headers, JSON error bodies,
// content types, and the process-wide counters /metrics shows.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

namespace respite::http {

// Every status the endpoint sends.
inline constexpr int kStatuses[] = {200, 400, 401, 404, 405, 409, 413, 431, 503};
inline constexpr size_t kNumStatuses = std::size(kStatuses);

// Process-wide (every loop's endpoint adds to them; /metrics shows the sums).
struct Counters {
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> connections_received{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> responses[kNumStatuses] = {};  // by kStatuses position
};
extern Counters g_counters;

inline constexpr std::string_view kJson = "application/json";
inline constexpr std::string_view kText = "text/plain; charset=utf-8";
inline constexpr std::string_view kPrometheus = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr std::string_view kAuthenticate = "WWW-Authenticate: Basic realm=\"respite\"\r\n";

// How the response ends the exchange.
enum class Persist : uint8_t {
  kKeep,        // HTTP/1.1 keep-alive (the default, no header)
  kKeepHeader,  // HTTP/1.0 keep-alive: say so
  kClose,       // last response on this connection
};

// Status line, Content-Type, Content-Length, the Connection header `persist` asks for,
// `extra_headers` (each ending in CRLF), then the body unless `head`. Counted in g_counters.
void append_response(std::string& out, int status, std::string_view ctype, std::string_view body,
                     bool head, Persist persist, std::string_view extra_headers = {});

// {"status": N, "error": "..."}
std::string json_error(int status, std::string_view error);

}  // namespace respite::http
