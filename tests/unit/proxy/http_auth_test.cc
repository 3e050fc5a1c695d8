// The HTTP endpoint's password check (Authorization: Basic / Bearer) and base64 decoding.
#include <catch2/catch.hpp>

#include <string>

#include "proxy/http/http.h"

using namespace respite::http;

namespace {

std::string basic(std::string_view user_pass) {
  std::string out = "Basic ";
  append_base64(out, user_pass);
  return out;
}

}  // namespace

TEST_CASE("base64_decode: padding and bad input", "[http]") {
  std::string out;
  CHECK(base64_decode("", out));
  CHECK(out.empty());
  CHECK((base64_decode("Zg==", out) && out == "f"));
  CHECK((base64_decode("Zg", out) && out == "f"));
  CHECK((base64_decode("Zm8=", out) && out == "fo"));
  CHECK((base64_decode("Zm9vYmFy", out) && out == "foobar"));
  CHECK_FALSE(base64_decode("Z", out));
  CHECK_FALSE(base64_decode("Zg=", out));
  CHECK_FALSE(base64_decode("Z===", out));
  CHECK_FALSE(base64_decode("====", out));
  CHECK_FALSE(base64_decode("Zg==Zg==", out));
  CHECK_FALSE(base64_decode("Zm9v YmFy", out));
  CHECK_FALSE(base64_decode("Zm9v*mFy", out));
}

TEST_CASE("authorization_matches: Basic with any user, Bearer", "[http]") {
  const std::string pw = "s3cret:with colon";
  CHECK(authorization_matches(basic("default:" + pw), pw));
  CHECK(authorization_matches(basic("anyone:" + pw), pw));
  CHECK(authorization_matches(basic(":" + pw), pw));
  CHECK(authorization_matches("Bearer " + pw, pw));
  CHECK(authorization_matches("bearer   " + pw + "  ", pw));
  CHECK(authorization_matches("  BASIC " + basic("u:" + pw).substr(6), pw));
  CHECK_FALSE(authorization_matches(basic("default:wrong"), pw));
  CHECK_FALSE(authorization_matches(basic("default:" + pw + "x"), pw));
  // The user name ends at the first colon: user "s3cret", password "with colon".
  CHECK_FALSE(authorization_matches(basic(pw), pw));
  CHECK(authorization_matches(basic(pw), "with colon"));
  CHECK_FALSE(authorization_matches(basic("nocolon"), "nocolon"));
  CHECK_FALSE(authorization_matches("Bearer", pw));
  CHECK_FALSE(authorization_matches("Bearer wrong", pw));
  CHECK_FALSE(authorization_matches("Token " + pw, pw));
  CHECK_FALSE(authorization_matches(pw, pw));
  CHECK_FALSE(authorization_matches("", pw));
  CHECK_FALSE(authorization_matches("Basic !!!!", pw));
}
