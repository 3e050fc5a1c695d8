// Pure helpers of the HTTP endpoint (proxy/http/http_server.h has the endpoint and its
// contract): query strings, JSON, base64, the Authorization header. No I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace respite {

namespace http {

// Query strings (proxy/http/query.cc; unit-tested in tests/unit/proxy/http_test.cc).

// Percent-decoding of one query component ('+' is a space, as in HTML forms and the seeds'
// servers). False when a '%' is not followed by two hex digits.
bool url_decode(std::string_view in, std::string& out);

struct QueryParam {
  std::string name;
  std::string value;
};
// Splits `a=1&b=2` into decoded pairs (empty segments skipped; `a` alone is a=""). False on a
// malformed percent-escape anywhere.
bool parse_query(std::string_view query, std::vector<QueryParam>& out);

// JSON and base64 (proxy/http/http_json.cc).
bool valid_utf8(std::string_view s);
// Appends `s` as a JSON string literal (with the quotes), in one pass over the bytes: control
// characters as \n \r \t \b \f or \u00xx, '"' and '\' escaped, valid UTF-8 as is, every byte
// that is not part of valid UTF-8 as \ufffd; returns false when there were any of those.
bool append_json_string(std::string& out, std::string_view s);
void append_base64(std::string& out, std::string_view bytes);
// Standard alphabet, padding optional; false on any other character or a malformed end.
bool base64_decode(std::string_view in, std::string& out);
// Appends `"name": "..."` and, when `bytes` is not valid UTF-8, `, "name_base64": "..."`.
void append_json_bytes_field(std::string& out, std::string_view name, std::string_view bytes);

// True when an Authorization header value carries `password` (proxy/http/http_auth.cc): "Basic"
// with base64 of `user:password` (any user name) or "Bearer <password>"; scheme names are
// case-insensitive. Passwords are compared with secret_equal.
bool authorization_matches(std::string_view header_value, std::string_view password);
// The credentials of an Authorization header value: "Basic" gives user and password, "Bearer
// <password>" the default user's. False for another scheme or a malformed value.
bool authorization_credentials(std::string_view header_value, std::string& user,
                               std::string& password);

}  // namespace http

}  // namespace respite
