// HTTP responses and the endpoint's counters. See response.h.
#include "proxy/http/response.h"

#include <fmt/format.h>

#include "proxy/http/http.h"

namespace respite::http {

Counters g_counters;

namespace {

void count_response(int status) {
  for (size_t i = 0; i < kNumStatuses; ++i)
    if (kStatuses[i] == status) g_counters.responses[i].fetch_add(1, std::memory_order_relaxed);
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

}  // namespace

void append_response(std::string& out, int status, std::string_view ctype, std::string_view body,
                     bool head, Persist persist, std::string_view extra_headers) {
  fmt::format_to(std::back_inserter(out),
                 "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
                 reason(status), ctype, body.size(),
                 persist == Persist::kClose        ? "Connection: close\r\n"
                 : persist == Persist::kKeepHeader ? "Connection: keep-alive\r\n"
                                                   : "",
                 extra_headers);
  if (!head) out.append(body);
  count_response(status);
}

std::string json_error(int status, std::string_view error) {
  std::string b = fmt::format("{{\"status\": {}, \"error\": ", status);
  append_json_string(b, error);
  b += "}";
  return b;
}

}  // namespace respite::http
