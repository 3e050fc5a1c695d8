// RequestParser: Redis 7.0's answers on a corpus of requests, and the same answers whatever way
// the bytes are split (every offset, byte by byte, random chunks, buffer moving in memory).
#include "resp/request_parser.h"

#include <catch2/catch.hpp>

#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "resp/reply_writer.h"
#include "unit/resp/alloc_probe.h"

using namespace std::string_literals;
using resp::ErrorCode;
using resp::Frame;
using resp::Limits;
using resp::RequestParser;
using resp::Result;
using resp::Status;

namespace {

// What one parse() call said, with the frame's contents copied out.
struct Outcome {
  Status status = Status::NeedMore;
  ErrorCode error = ErrorCode::None;
  char bad = 0;
  size_t consumed = 0;
  bool is_inline = false;
  std::vector<std::string> args;
  std::string raw;
  bool operator==(const Outcome&) const = default;
};

std::string printable(std::string_view s, size_t max = 60) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 32 || c >= 127) {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string describe(const std::vector<Outcome>& trace) {
  std::ostringstream os;
  for (const Outcome& o : trace) {
    os << (o.status == Status::Ok ? "Ok" : o.status == Status::Error ? "Error" : "NeedMore");
    if (o.status == Status::Error) os << "(" << printable(resp::error_text(o.error, o.bad)) << ")";
    if (o.status == Status::Ok) {
      os << (o.is_inline ? " inline" : " multibulk") << " consumed=" << o.consumed << " [";
      for (const auto& a : o.args) os << "\"" << printable(a, 20) << "\" ";
      os << "]";
    }
    os << "; ";
  }
  return os.str();
}

Outcome record(const Result& r, const Frame& f) {
  Outcome o;
  o.status = r.status;
  o.error = r.error;
  o.bad = r.bad;
  o.consumed = r.consumed;
  if (r.status == Status::Ok) {
    o.is_inline = f.is_inline();
    for (size_t i = 0; i < f.argc(); ++i) o.args.emplace_back(f.arg(i));
    o.raw.assign(f.raw());
  }
  return o;
}

// Parses everything in `bytes` at once: a trace of Oks ending in NeedMore or Error.
std::vector<Outcome> one_shot(std::string_view bytes, const Limits& limits) {
  RequestParser p(limits);
  Frame f;
  std::vector<Outcome> trace;
  size_t off = 0;
  for (;;) {
    Result r = p.parse(bytes.substr(off), f);
    trace.push_back(record(r, f));
    if (r.status != Status::Ok) break;
    off += r.consumed;
  }
  return trace;
}

// Feeds `bytes` as a client connection would receive them: chunks ending at each of `cuts`
// (ascending) and at the end. After every chunk it parses until NeedMore, compacting consumed
// bytes away. With `move`, the buffer is reallocated before every call so that nothing the
// parser kept can be a pointer. Also checks that NeedMore never consumes nor fills the frame.
std::vector<Outcome> fed(std::string_view bytes, const std::vector<size_t>& cuts,
                         const Limits& limits, bool move, bool* need_more_ok) {
  RequestParser p(limits);
  Frame f;
  std::vector<Outcome> trace;
  std::string acc;   // unconsumed bytes, when moving
  size_t start = 0;  // first unconsumed byte of `bytes`, when not moving
  size_t prev = 0;
  Result last;
  bool stopped = false;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    if (end < prev) continue;
    if (move) {
      std::string next;
      next.reserve(acc.size() + (end - prev) + 1);
      next = acc;
      next.append(bytes.substr(prev, end - prev));
      acc.swap(next);
    }
    prev = end;
    for (;;) {
      std::string_view buf = move ? std::string_view(acc) : bytes.substr(start, end - start);
      last = p.parse(buf, f);
      if (last.status == Status::NeedMore) {
        if (last.consumed != 0 || f.argc() != 0) *need_more_ok = false;
        break;
      }
      trace.push_back(record(last, f));
      if (last.status == Status::Error) {
        stopped = true;
        break;
      }
      if (move) {
        acc.erase(0, last.consumed);
      } else {
        start += last.consumed;
      }
    }
    if (stopped) break;
  }
  if (!stopped) trace.push_back(record(last, f));
  return trace;
}

struct Expect {
  Status status;
  ErrorCode error = ErrorCode::None;
  std::vector<std::string> args = {};
  char bad = 0;
};

Expect ok(std::vector<std::string> args) { return {Status::Ok, ErrorCode::None, std::move(args)}; }
Expect err(ErrorCode e, char bad = 0) { return {Status::Error, e, {}, bad}; }
Expect more() { return {Status::NeedMore}; }

struct Sample {
  std::string name;
  std::string bytes;
  std::vector<Expect> trace;
  Limits limits = {};
};

Limits unauth() {
  Limits l;
  l.unauthenticated = true;
  return l;
}

std::string multibulk(const std::vector<std::string>& args) {
  std::string out;
  resp::Writer w(out);
  w.array(args.size());
  for (const auto& a : args) w.bulk(a);
  return out;
}

std::string binary_blob(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  // Make sure the terminators a scanning parser could trip on are in there.
  if (n > 8) s.replace(n / 2, 4, "\r\n\r\n");
  return s;
}

const std::vector<Sample>& corpus() {
  static const std::vector<Sample> samples = [] {
    using E = ErrorCode;
    std::vector<Sample> v;
    // Multibulk.
    v.push_back({"ping", "*1\r\n$4\r\nPING\r\n", {ok({"PING"}), more()}});
    v.push_back({"set", "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$5\r\nhello\r\n",
                 {ok({"SET", "a", "hello"}), more()}});
    v.push_back({"crlf inside bulk", "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n",
                 {ok({"GET", "a\r\nb"}), more()}});
    v.push_back({"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", {ok({"ECHO", ""}), more()}});
    v.push_back({"nul in bulk", "*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n"s,
                 {ok({"ECHO", "a\0b"s}), more()}});
    v.push_back({"*0 is empty", "*0\r\n", {ok({}), more()}});
    v.push_back({"*-1 is empty", "*-1\r\n", {ok({}), more()}});
    v.push_back({"*-10 is empty", "*-10\r\n", {ok({}), more()}});
    v.push_back({"*LLONG_MIN is empty", "*-9223372036854775808\r\n", {ok({}), more()}});
    v.push_back({"incomplete header", "*2", {more()}});
    v.push_back({"incomplete header cr", "*2\r", {more()}});
    v.push_back({"incomplete bulk", "*2\r\n$3\r\nGET\r\n$5\r\nhel", {more()}});
    v.push_back({"incomplete bulk trailer", "*1\r\n$4\r\nPING\r", {more()}});
    v.push_back({"INT_MAX count waits", "*2147483647\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", {more()}});
    v.push_back({"20M count waits (Redis 7 allows up to INT_MAX)", "*20000000\r\n", {more()}});
    v.push_back({"max bulk waits", "*1\r\n$536870912\r\n", {more()}});
    // Redis skips the byte after a header's CR and the two after a payload without looking.
    v.push_back({"byte after CR not checked", "*1\rX$4\r\nPING\r\n", {ok({"PING"}), more()}});
    v.push_back({"payload trailer not checked", "*1\r\n$4\r\nPINGxy*1\r\n$1\r\nx\r\n",
                 {ok({"PING"}), ok({"x"}), more()}});
    v.push_back({"LF-only header waits for a CR", "*1\n", {more()}});
    v.push_back({"LF-only header then CR later", "*1\n$4\r\nPING\r\n",
                 {err(E::InvalidMultibulkLength)}});
    // Multibulk errors.
    v.push_back({"count not a number", "*abc\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count empty", "*\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count with plus", "*+1\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count with space", "* 1\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count leading zero", "*01\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count -0", "*-0\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count INT_MAX+1", "*2147483648\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count 3e9", "*3000000000\r\n", {err(E::InvalidMultibulkLength)}});
    v.push_back({"count overflows int64", "*9223372036854775808\r\n",
                 {err(E::InvalidMultibulkLength)}});
    v.push_back({"count underflows int64", "*-9223372036854775809\r\n",
                 {err(E::InvalidMultibulkLength)}});
    v.push_back({"bulk len -1", "*1\r\n$-1\r\n", {err(E::InvalidBulkLength)}});
    v.push_back({"bulk len not a number", "*1\r\n$abc\r\n", {err(E::InvalidBulkLength)}});
    v.push_back({"bulk len empty", "*1\r\n$\r\n", {err(E::InvalidBulkLength)}});
    v.push_back({"bulk len leading zero", "*1\r\n$01\r\nx\r\n", {err(E::InvalidBulkLength)}});
    v.push_back({"bulk len over 512MB", "*1\r\n$536870913\r\n", {err(E::InvalidBulkLength)}});
    // The one-pass header reader takes up to 18 digits; 19 and more go the general way. Both
    // must give the same answers.
    v.push_back({"bulk len 18 digits", "*1\r\n$100000000000000000\r\n",
                 {err(E::InvalidBulkLength)}});
    v.push_back({"bulk len 19 digits", "*1\r\n$1000000000000000000\r\n",
                 {err(E::InvalidBulkLength)}});
    v.push_back({"count 18 digits", "*100000000000000000\r\n",
                 {err(E::InvalidMultibulkLength)}});
    v.push_back({"count 19 digits", "*1000000000000000000\r\n",
                 {err(E::InvalidMultibulkLength)}});
    v.push_back({"bulk len digits then NUL", "*1\r\n$4\0\r\nPING\r\n"s, {more()}});
    v.push_back({"expected $ (Redis's test)", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
                 {err(E::ExpectedDollar, 'f')}});
    v.push_back({"expected $ waits for the line", "*2\r\n$3\r\nGET\r\n:1", {more()}});
    v.push_back({"expected $ got CR", "*1\r\n\r\n", {err(E::ExpectedDollar, '\r')}});
    v.push_back({"error after good requests", "*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$x\r\n",
                 {ok({"PING"}), ok({"PING"}), err(E::InvalidBulkLength)}});
    // Line limits: a terminator beyond 64 KB is an error, one within it is not.
    v.push_back({"mbulk count line too big", "*" + std::string(70000, '1'),
                 {err(E::TooBigMultibulk)}});
    v.push_back({"mbulk count line too big, CR at 64K+1",
                 "*" + std::string(65536, '1') + "\r\n", {err(E::TooBigMultibulk)}});
    v.push_back({"mbulk count line at 64K is parsed", "*" + std::string(65535, '1') + "\r\n",
                 {err(E::InvalidMultibulkLength)}});
    v.push_back({"mbulk count line of 64K waits", "*" + std::string(65535, '1'), {more()}});
    v.push_back({"bulk count line too big", "*1\r\n$" + std::string(70000, '1'),
                 {err(E::TooBigBulkCount)}});
    v.push_back({"bulk count line too big, no $", "*1\r\n" + std::string(70000, 'x'),
                 {err(E::TooBigBulkCount)}});
    v.push_back({"bulk count line at 64K is parsed",
                 "*1\r\n$" + std::string(65535, '1') + "\r\n", {err(E::InvalidBulkLength)}});
    // A NUL hides the terminator from Redis's strchr: the request never completes.
    v.push_back({"nul in count line waits", "*1\0\r\n$4\r\nPING\r\n"s, {more()}});
    v.push_back({"nul in count line, then too big", "*1\0\r\n"s + std::string(70000, 'x'),
                 {err(E::TooBigMultibulk)}});
    v.push_back({"nul in bulk count line waits", "*1\r\n$4\0\r\nPING\r\n"s, {more()}});
    // Inline.
    v.push_back({"inline ping crlf", "PING\r\n", {ok({"PING"}), more()}});
    v.push_back({"inline ping lf", "PING\n", {ok({"PING"}), more()}});
    v.push_back({"inline blanks", "  SET \t a   b  \r\n", {ok({"SET", "a", "b"}), more()}});
    v.push_back({"inline extra CR", "SET a b\r\r\n", {ok({"SET", "a", "b"}), more()}});
    v.push_back({"inline CR separates", "SET a\rb\n", {ok({"SET", "a", "b"}), more()}});
    v.push_back({"inline dquotes", "SET a \"b c\"\r\n", {ok({"SET", "a", "b c"}), more()}});
    v.push_back({"inline dq escapes", "ECHO \"a\\nb\\r\\t\\b\\a\\\\\\\"z\"\r\n",
                 {ok({"ECHO", "a\nb\r\t\b\a\\\"z"}), more()}});
    v.push_back({"inline hex escapes", "ECHO \"\\x41\\x4a\\x00\\xff\"\r\n",
                 {ok({"ECHO", "AJ\0\xff"s}), more()}});
    v.push_back({"inline bad hex is a plain escape", "ECHO \"\\x4g\" \"\\x\"\r\n",
                 {ok({"ECHO", "x4g", "x"}), more()}});
    v.push_back({"inline other escape", "ECHO \"\\q\"\r\n", {ok({"ECHO", "q"}), more()}});
    v.push_back({"inline squotes", "ECHO 'it\\'s' 'a\\nb' 'x\"y'\r\n",
                 {ok({"ECHO", "it's", "a\\nb", "x\"y"}), more()}});
    v.push_back({"inline quote mid-argument", "ECHO a\"b c\"\r\n", {ok({"ECHO", "ab c"}), more()}});
    v.push_back({"inline empty quotes", "ECHO \"\" ''\r\n", {ok({"ECHO", "", ""}), more()}});
    v.push_back({"inline tab after quote", "ECHO \"x\"\t'y'\r\n", {ok({"ECHO", "x", "y"}), more()}});
    v.push_back({"inline \\v after quote", "ECHO \"x\"\v\r\n", {ok({"ECHO", "x"}), more()}});
    v.push_back({"inline \\v inside argument", "ECHO a\vb\r\n", {ok({"ECHO", "a\vb"}), more()}});
    v.push_back({"inline \\v between arguments", "\vECHO\f a\r\n",
                 {ok({"ECHO\f", "a"}), more()}});
    v.push_back({"inline unbalanced dq", "SET \"a\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline unbalanced sq", "SET 'a\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline text after dq", "SET \"a\"b\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline text after sq", "SET 'a'b\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline escaped closing dq", "ECHO \"a\\\"\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline backslash at end of dq", "ECHO \"a\\\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline dq broken by the LF", "ECHO \"a\r\nb\"\r\n", {err(E::UnbalancedQuotes)}});
    v.push_back({"inline empty crlf", "\r\n", {ok({}), more()}});
    v.push_back({"inline empty lf", "\n", {ok({}), more()}});
    v.push_back({"inline blanks only", " \t \r\n", {ok({}), more()}});
    v.push_back({"inline incomplete", "PIN", {more()}});
    v.push_back({"inline incomplete cr", "PING\r", {more()}});
    v.push_back({"inline nul waits", "GET a\0b\r\n"s, {more()}});
    v.push_back({"inline nul then too big", "GET a\0b\r\n"s + std::string(70000, 'x'),
                 {err(E::TooBigInline)}});
    v.push_back({"inline too big", std::string(70000, 'a'), {err(E::TooBigInline)}});
    v.push_back({"inline of 64K waits", std::string(65536, 'a'), {more()}});
    v.push_back({"inline of 64K + LF", std::string(65536, 'a') + "\n",
                 {ok({std::string(65536, 'a')}), more()}});
    v.push_back({"inline of 64K + CRLF is over the limit", std::string(65536, 'a') + "\r\n",
                 {err(E::TooBigInline)}});
    v.push_back({"inline of 64K+1 + LF", std::string(65537, 'a') + "\n", {err(E::TooBigInline)}});
    // Pipelines.
    v.push_back({"pipeline",
                 "*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n\r\n*0\r\nSET k v\n"
                 "*2\r\n$3\r\nGET",
                 {ok({"PING"}), ok({"PING"}), ok({"ECHO", "hi"}), ok({}), ok({}),
                  ok({"SET", "k", "v"}), more()}});
    v.push_back({"pipeline of gets", [] {
                   std::string s;
                   for (int i = 0; i < 20; ++i) s += multibulk({"GET", "key:" + std::to_string(i)});
                   return s;
                 }(),
                 [] {
                   std::vector<Expect> t;
                   for (int i = 0; i < 20; ++i) t.push_back(ok({"GET", "key:" + std::to_string(i)}));
                   t.push_back(more());
                   return t;
                 }()});
    // Big arguments.
    {
      std::string big = binary_blob(100000, 1);
      v.push_back({"100 KB binary value", multibulk({"SET", "k", big}) + "PING\r\n",
                   {ok({"SET", "k", big}), ok({"PING"}), more()}});
    }
    {
      std::vector<std::string> args{"MSET"};
      for (int i = 0; i < 1000; ++i) args.push_back(std::to_string(i));
      v.push_back({"1000 arguments", multibulk(args), {ok(args), more()}});
    }
    // Limits for unauthenticated clients, and a configured bulk limit.
    v.push_back({"unauth: 11 args", "*11\r\n", {err(E::UnauthenticatedMultibulk)}, unauth()});
    v.push_back({"unauth: 10 args wait", "*10\r\n", {more()}, unauth()});
    v.push_back({"unauth: bulk 16385", "*1\r\n$16385\r\n", {err(E::UnauthenticatedBulk)},
                 unauth()});
    v.push_back({"unauth: bulk 16384 waits", "*1\r\n$16384\r\n", {more()}, unauth()});
    v.push_back({"unauth: invalid count first", "*2147483648\r\n",
                 {err(E::InvalidMultibulkLength)}, unauth()});
    v.push_back({"unauth: invalid bulk first", "*1\r\n$536870913\r\n",
                 {err(E::InvalidBulkLength)}, unauth()});
    v.push_back({"unauth: inline unaffected", "AUTH " + std::string(20000, 'p') + "\r\n",
                 {ok({"AUTH", std::string(20000, 'p')}), more()}, unauth()});
    v.push_back({"unauth: auth command", multibulk({"AUTH", "secret"}),
                 {ok({"AUTH", "secret"}), more()}, unauth()});
    {
      Limits l;
      l.max_bulk = 10;
      v.push_back({"max_bulk 10: 10 ok", multibulk({"0123456789"}), {ok({"0123456789"}), more()},
                   l});
      v.push_back({"max_bulk 10: 11 rejected", "*1\r\n$11\r\n", {err(E::InvalidBulkLength)}, l});
    }
    return v;
  }();
  return samples;
}

bool matches(const std::vector<Outcome>& got, const std::vector<Expect>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].status != want[i].status || got[i].error != want[i].error) return false;
    if (want[i].status == Status::Ok && got[i].args != want[i].args) return false;
    if (want[i].status == Status::Error && want[i].error == ErrorCode::ExpectedDollar &&
        got[i].bad != want[i].bad) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("request corpus: one-shot parse gives Redis's answers", "[request_parser]") {
  for (const Sample& s : corpus()) {
    auto trace = one_shot(s.bytes, s.limits);
    INFO(s.name << ": " << printable(s.bytes) << "\n got: " << describe(trace));
    CHECK(matches(trace, s.trace));
    // Oks tile the input: raw() is exactly the consumed bytes, back to back.
    size_t off = 0;
    for (const Outcome& o : trace) {
      if (o.status != Status::Ok) break;
      CHECK(o.raw == s.bytes.substr(off, o.consumed));
      off += o.consumed;
    }
  }
}

TEST_CASE("request corpus: split at every offset gives the one-shot answer", "[request_parser]") {
  for (const Sample& s : corpus()) {
    auto expected = one_shot(s.bytes, s.limits);
    // Moving the buffer costs a copy per call: only for the samples small enough.
    bool move = s.bytes.size() <= 4096;
    bool need_more_ok = true;
    size_t mismatches = 0;
    size_t first_bad = 0;
    for (size_t k = 0; k <= s.bytes.size(); ++k) {
      auto got = fed(s.bytes, {k}, s.limits, move, &need_more_ok);
      if (!(got == expected)) {
        if (mismatches++ == 0) first_bad = k;
      }
    }
    INFO(s.name << ": first mismatch at offset " << first_bad);
    CHECK(mismatches == 0);
    CHECK(need_more_ok);
  }
}

TEST_CASE("request corpus: byte by byte gives the one-shot answer", "[request_parser]") {
  for (const Sample& s : corpus()) {
    auto expected = one_shot(s.bytes, s.limits);
    std::vector<size_t> cuts(s.bytes.size());
    for (size_t i = 0; i < cuts.size(); ++i) cuts[i] = i + 1;
    bool need_more_ok = true;
    auto got = fed(s.bytes, cuts, s.limits, s.bytes.size() <= 4096, &need_more_ok);
    INFO(s.name << "\n expected: " << describe(expected) << "\n got: " << describe(got));
    CHECK(got == expected);
    CHECK(need_more_ok);
  }
}

TEST_CASE("request corpus: random chunks", "[request_parser]") {
  std::mt19937 rng(12345);
  for (const Sample& s : corpus()) {
    if (s.bytes.size() > 200000) continue;
    auto expected = one_shot(s.bytes, s.limits);
    for (int round = 0; round < 20; ++round) {
      std::vector<size_t> cuts;
      size_t at = 0;
      while (at < s.bytes.size()) {
        at += 1 + rng() % (round % 2 ? 7 : 5000);
        cuts.push_back(std::min(at, s.bytes.size()));
      }
      bool need_more_ok = true;
      auto got = fed(s.bytes, cuts, s.limits, s.bytes.size() <= 4096, &need_more_ok);
      INFO(s.name << " round " << round << "\n got: " << describe(got));
      REQUIRE(got == expected);
      REQUIRE(need_more_ok);
    }
  }
}

TEST_CASE("error texts are Redis's, byte for byte", "[request_parser]") {
  using E = ErrorCode;
  CHECK(resp::error_text(E::InvalidMultibulkLength) ==
        "-ERR Protocol error: invalid multibulk length\r\n");
  CHECK(resp::error_text(E::InvalidBulkLength) == "-ERR Protocol error: invalid bulk length\r\n");
  CHECK(resp::error_text(E::ExpectedDollar, 'f') ==
        "-ERR Protocol error: expected '$', got 'f'\r\n");
  // addReplyErrorFormat turns CR and LF into spaces.
  CHECK(resp::error_text(E::ExpectedDollar, '\r') ==
        "-ERR Protocol error: expected '$', got ' '\r\n");
  CHECK(resp::error_text(E::TooBigInline) == "-ERR Protocol error: too big inline request\r\n");
  CHECK(resp::error_text(E::TooBigMultibulk) ==
        "-ERR Protocol error: too big mbulk count string\r\n");
  CHECK(resp::error_text(E::TooBigBulkCount) ==
        "-ERR Protocol error: too big bulk count string\r\n");
  CHECK(resp::error_text(E::UnbalancedQuotes) ==
        "-ERR Protocol error: unbalanced quotes in request\r\n");
  CHECK(resp::error_text(E::UnauthenticatedMultibulk) ==
        "-ERR Protocol error: unauthenticated multibulk length\r\n");
  CHECK(resp::error_text(E::UnauthenticatedBulk) ==
        "-ERR Protocol error: unauthenticated bulk length\r\n");
}

TEST_CASE("a huge declared count allocates nothing in proportion", "[request_parser]") {
  if (!alloc_probe::available()) WARN("allocation probe off (sanitizer build): sizes not checked");
  RequestParser p;
  Frame f;
  std::string buf = "*2147483647\r\n";
  alloc_probe::start();
  Result r = p.parse(buf, f);
  size_t header_largest = alloc_probe::stop();
  REQUIRE(r.status == Status::NeedMore);
  CHECK(header_largest < 1024);

  // Arguments arrive: memory grows with them, not with the declared count.
  for (int i = 0; i < 1000; ++i) buf += "$3\r\nfoo\r\n";
  alloc_probe::start();
  r = p.parse(buf, f);
  size_t args_largest = alloc_probe::stop();
  CHECK(r.status == Status::NeedMore);
  CHECK(args_largest < 1000 * sizeof(uint64_t) * 2 * 2 + 1024);
  CHECK(p.want() <= buf.size() + 1);

  // Same for a declared bulk length: waiting for 512 MB costs nothing.
  RequestParser q;
  std::string big = "*1\r\n$536870912\r\nabc";
  alloc_probe::start();
  r = q.parse(big, f);
  size_t bulk_largest = alloc_probe::stop();
  CHECK(r.status == Status::NeedMore);
  CHECK(bulk_largest < 1024);
  // The hint is what the client has declared: header + payload + CRLF.
  CHECK(q.want() == 16 + 536870912 + 2);
}

TEST_CASE("want() asks for the rest of a big bulk", "[request_parser]") {
  RequestParser p;
  Frame f;
  std::string req = multibulk({"SET", "k", std::string(300000, 'v')});
  Result r = p.parse(std::string_view(req).substr(0, 30), f);
  REQUIRE(r.status == Status::NeedMore);
  CHECK(p.want() == req.size());
  r = p.parse(std::string_view(req).substr(0, 200000), f);
  REQUIRE(r.status == Status::NeedMore);
  CHECK(p.want() == req.size());
  r = p.parse(req, f);
  REQUIRE(r.status == Status::Ok);
  CHECK(r.consumed == req.size());
  CHECK(p.want() == 0);
  CHECK(f.arg(2).size() == 300000);
}

TEST_CASE("a big bulk fed byte by byte completes (payload is never rescanned)",
          "[request_parser]") {
  // 4 MB one byte at a time: quadratic rescanning would take minutes, linear takes moments.
  std::string req = multibulk({"SET", "k", std::string(4 << 20, 'v')});
  RequestParser p;
  Frame f;
  Result r;
  for (size_t n = 1; n <= req.size(); ++n) {
    r = p.parse(std::string_view(req).substr(0, n), f);
    if (r.status != Status::NeedMore) break;
  }
  REQUIRE(r.status == Status::Ok);
  CHECK(r.consumed == req.size());
  CHECK(f.argc() == 3);
}

TEST_CASE("resume state is in the parser: any Frame may be passed", "[request_parser]") {
  RequestParser p;
  std::string req = multibulk({"MSET", "a", "1", "b", "2"});
  for (size_t n = 1; n < req.size(); ++n) {
    Frame scratch;
    REQUIRE(p.parse(std::string_view(req).substr(0, n), scratch).status == Status::NeedMore);
  }
  Frame f;
  Result r = p.parse(req, f);
  REQUIRE(r.status == Status::Ok);
  REQUIRE(f.argc() == 5);
  CHECK(f.arg(0) == "MSET");
  CHECK(f.arg(4) == "2");
  CHECK(f.raw() == req);
  CHECK_FALSE(f.is_inline());
}

TEST_CASE("a reused Frame is refilled, and reset() forgets progress", "[request_parser]") {
  RequestParser p;
  Frame f;
  REQUIRE(p.parse("SET a \"b c\"\r\n", f).status == Status::Ok);
  CHECK(f.is_inline());
  CHECK(f.argc() == 3);
  CHECK(f.raw() == "SET a \"b c\"\r\n");
  REQUIRE(p.parse("*1\r\n$4\r\nPING\r\n", f).status == Status::Ok);
  CHECK_FALSE(f.is_inline());
  CHECK(f.argc() == 1);
  CHECK(f.arg(0) == "PING");

  REQUIRE(p.parse("*2\r\n$3\r\nGET\r\n", f).status == Status::NeedMore);
  CHECK(f.argc() == 0);
  p.reset();
  Result r = p.parse("PING\r\n", f);
  REQUIRE(r.status == Status::Ok);
  CHECK(f.arg(0) == "PING");
}

TEST_CASE("an inline request re-encoded by Writer::command parses to the same arguments",
          "[request_parser]") {
  RequestParser p;
  Frame f;
  REQUIRE(p.parse("SET 'k 1' \"v\\x00\\r\\n\"\r\n", f).status == Status::Ok);
  std::string out;
  resp::Writer w(out);
  w.command(f);
  Frame g;
  RequestParser q;
  Result r = q.parse(out, g);
  REQUIRE(r.status == Status::Ok);
  CHECK(r.consumed == out.size());
  REQUIRE(g.argc() == 3);
  CHECK(g.arg(1) == "k 1");
  CHECK(g.arg(2) == "v\0\r\n"s);
}
