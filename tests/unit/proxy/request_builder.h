// Test helper: a resp::Frame built from argument strings, obtained the way the proxy obtains
// frames (multibulk bytes parsed by resp::RequestParser). The frame's arguments point into the
// object's own buffer, so a TestRequest is neither copied nor moved.
#pragma once

#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "resp/request_parser.h"

namespace respite::test {

class TestRequest {
 public:
  TestRequest(std::initializer_list<std::string_view> args) { build(args.begin(), args.end()); }
  explicit TestRequest(const std::vector<std::string>& args) { build(args.begin(), args.end()); }
  TestRequest(const TestRequest&) = delete;
  TestRequest& operator=(const TestRequest&) = delete;

  const resp::Frame& frame() const { return frame_; }
  operator const resp::Frame&() const { return frame_; }  // NOLINT: pass where a Frame goes

 private:
  template <typename It>
  void build(It first, It last) {
    buf_ = "*" + std::to_string(last - first) + "\r\n";
    for (It it = first; it != last; ++it) {
      std::string_view a = *it;
      buf_ += "$" + std::to_string(a.size()) + "\r\n";
      buf_.append(a.data(), a.size());
      buf_ += "\r\n";
    }
    resp::RequestParser parser;
    resp::Result r = parser.parse(buf_, frame_);
    REQUIRE(r.status == resp::Status::Ok);
    REQUIRE(r.consumed == buf_.size());
    REQUIRE(frame_.argc() == static_cast<size_t>(last - first));
  }

  std::string buf_;
  resp::Frame frame_;
};

}  // namespace respite::test
