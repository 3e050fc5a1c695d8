// Query strings of the HTTP endpoint's request targets: percent-decoding and name=value pairs.
// No I/O. See http.h.
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/http.h"
#include "proxy/ops/text.h"

namespace respite::http {

bool url_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;  // fewer than two characters follow
      int h = hex_digit(in[i + 1]), l = hex_digit(in[i + 2]);
      if (h < 0 || l < 0) return false;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

bool parse_query(std::string_view query, std::vector<QueryParam>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view seg = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (seg.empty()) continue;
    size_t eq = seg.find('=');
    QueryParam p;
    if (!url_decode(seg.substr(0, eq), p.name)) return false;
    if (eq != std::string_view::npos && !url_decode(seg.substr(eq + 1), p.value)) return false;
    out.push_back(std::move(p));
  }
  return true;
}

}  // namespace respite::http
