// The HTTP endpoint's password check: the Authorization header against requirepass. See http.h.
#include <string>
#include <string_view>

#include "proxy/http/http.h"
#include "proxy/ops/text.h"

namespace respite::http {

namespace {

bool ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && ows(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool authorization_matches(std::string_view header_value, std::string_view password) {
  std::string_view v = trim(header_value);
  size_t sp = 0;
  while (sp < v.size() && !ows(v[sp])) ++sp;
  std::string_view scheme = v.substr(0, sp);
  std::string_view credentials = trim(v.substr(sp));
  if (ieq(scheme, "Bearer")) return secret_equal(credentials, password);
  if (!ieq(scheme, "Basic")) return false;
  std::string decoded;
  if (!base64_decode(credentials, decoded)) return false;
  size_t colon = decoded.find(':');  // user ids cannot hold a colon (RFC 7617); passwords can
  if (colon == std::string::npos) return false;
  return secret_equal(std::string_view(decoded).substr(colon + 1), password);
}

bool authorization_credentials(std::string_view header_value, std::string& user,
                               std::string& password) {
  std::string_view v = trim(header_value);
  size_t sp = 0;
  while (sp < v.size() && !ows(v[sp])) ++sp;
  std::string_view scheme = v.substr(0, sp);
  std::string_view credentials = trim(v.substr(sp));
  if (ieq(scheme, "Bearer")) {
    user = "default";
    password = std::string(credentials);
    return true;
  }
  if (!ieq(scheme, "Basic")) return false;
  std::string decoded;
  if (!base64_decode(credentials, decoded)) return false;
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  user = decoded.substr(0, colon);
  password = decoded.substr(colon + 1);
  return true;
}

}  // namespace respite::http
