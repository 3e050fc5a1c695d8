// ReplyScanner: boundaries of RESP2 and RESP3 replies on a corpus, the same whatever way the
// bytes are split, and the same boundaries as hiredis's own reader on RESP2.
#include "resp/reply_scanner.h"

#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "resp/reply_writer.h"

using namespace std::string_literals;
using resp::ReplyScanner;
using resp::ScanResult;
using St = resp::ScanResult::Status;

namespace {

struct Outcome {
  St status = St::NeedMore;
  size_t consumed = 0;
  char kind = 0;
  bool is_push = false;
  bool is_error = false;
  bool operator==(const Outcome&) const = default;
};

Outcome record(const ScanResult& r) {
  return {r.status, r.consumed, r.kind, r.is_push, r.is_error};
}

std::string describe(const std::vector<Outcome>& trace) {
  std::ostringstream os;
  for (const Outcome& o : trace) {
    os << (o.status == St::Ok ? "Ok" : o.status == St::Error ? "Error" : "NeedMore");
    if (o.status == St::Ok) {
      os << "(" << o.kind << " " << o.consumed << (o.is_push ? " push" : "")
         << (o.is_error ? " error" : "") << ")";
    }
    os << "; ";
  }
  return os.str();
}

std::vector<Outcome> one_shot(std::string_view bytes, size_t max_depth) {
  ReplyScanner s(max_depth);
  std::vector<Outcome> trace;
  size_t off = 0;
  for (;;) {
    ScanResult r = s.scan(bytes.substr(off));
    trace.push_back(record(r));
    if (r.status != St::Ok) break;
    off += r.consumed;
  }
  return trace;
}

// Feeds chunks ending at `cuts` and at the end, scanning until NeedMore after each; with `move`
// the buffer is reallocated before every call. NeedMore must never report consumed bytes.
std::vector<Outcome> fed(std::string_view bytes, const std::vector<size_t>& cuts,
                         size_t max_depth, bool move, bool* need_more_ok) {
  ReplyScanner s(max_depth);
  std::vector<Outcome> trace;
  std::string acc;
  size_t start = 0, prev = 0;
  ScanResult last;
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
      last = s.scan(buf);
      if (last.status == St::NeedMore) {
        if (last.consumed != 0) *need_more_ok = false;
        break;
      }
      trace.push_back(record(last));
      if (last.status == St::Error) {
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
  if (!stopped) trace.push_back(record(last));
  return trace;
}

struct Reply {
  std::string bytes;
  char kind;  // top-level type after any attribute
};

struct Sample {
  std::string name;
  std::vector<Reply> replies;  // complete replies, back to back
  std::string tail = {};       // then these bytes: incomplete (NeedMore) or garbage (Error)
  St tail_status = St::NeedMore;
  size_t max_depth = 128;
  bool resp2 = false;  // only RESP2 types: also checked against hiredis
};

std::vector<Outcome> expected_trace(const Sample& s) {
  std::vector<Outcome> t;
  for (const Reply& r : s.replies) {
    t.push_back({St::Ok, r.bytes.size(), r.kind, r.kind == '>', r.kind == '-' || r.kind == '!'});
  }
  t.push_back({s.tail_status, 0, 0, false, false});
  return t;
}

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

const std::vector<Reply>& resp2_replies() {
  static const std::vector<Reply> r = {
      {"+OK\r\n", '+'},
      {"+\r\n", '+'},
      {"-ERR unknown command 'foo', with args beginning with: \r\n", '-'},
      {"-MOVED 3999 127.0.0.1:6381\r\n", '-'},
      {":0\r\n", ':'},
      {":-9223372036854775808\r\n", ':'},
      {":9223372036854775807\r\n", ':'},
      {"$3\r\nfoo\r\n", '$'},
      {"$0\r\n\r\n", '$'},
      {"$-1\r\n", '$'},
      {"$6\r\na\r\nb\r\n\r\n", '$'},
      {"$5\r\na\0b\0c\r\n"s, '$'},
      {"$20000\r\n" + std::string(20000, 'z') + "\r\n", '$'},
      {"*-1\r\n", '*'},
      {"*0\r\n", '*'},
      {"*3\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n", '*'},
      {"*2\r\n*2\r\n+a\r\n-ERR b\r\n*1\r\n*0\r\n", '*'},
      {"*2\r\n-ERR x\r\n:1\r\n", '*'},
      {repeat("*1\r\n", 5) + ":1\r\n", '*'},
      {"*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", '*'},  // SCAN
  };
  return r;
}

const std::vector<Reply>& resp3_replies() {
  static const std::vector<Reply> r = {
      {"_\r\n", '_'},
      {",1.5\r\n", ','},
      {",-inf\r\n", ','},
      {",inf\r\n", ','},
      {",nan\r\n", ','},
      {",1e+300\r\n", ','},
      {"#t\r\n", '#'},
      {"#f\r\n", '#'},
      {"!21\r\nSYNTAX invalid syntax\r\n", '!'},
      {"!0\r\n\r\n", '!'},
      {"=15\r\ntxt:Some string\r\n", '='},
      {"=4\r\nmkd:\r\n", '='},
      {"(3492890328409238509324850943850943825024385\r\n", '('},
      {"(-1\r\n", '('},
      {"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", '%'},
      {"%0\r\n", '%'},
      {"~3\r\n+a\r\n+b\r\n+c\r\n", '~'},
      {"~0\r\n", '~'},
      {"%1\r\n*2\r\n:1\r\n:2\r\n~1\r\n#t\r\n", '%'},
      {"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
       "*2\r\n:2039123\r\n:9543892\r\n",
       '*'},
      {"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n", '*'},
      {"|0\r\n:1\r\n", ':'},
      {"|1\r\n+a\r\n|1\r\n+b\r\n+c\r\n+d\r\n:1\r\n", ':'},
      {"|1\r\n+a\r\n+b\r\n-ERR x\r\n", '-'},
      {"|1\r\n+a\r\n*1\r\n+b\r\n>1\r\n+c\r\n", '>'},
      {">4\r\n+pubsub\r\n+message\r\n+somechannel\r\n+this is the message\r\n", '>'},
      {">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n", '>'},
      {">2\r\n$10\r\ninvalidate\r\n_\r\n", '>'},
      {"*2\r\n_\r\n%1\r\n_\r\n_\r\n", '*'},
      {repeat("*1\r\n", 127) + ":1\r\n", '*'},
      {repeat("%1\r\n+k\r\n", 60) + "#t\r\n", '%'},
  };
  return r;
}

const std::vector<Sample>& corpus() {
  static const std::vector<Sample> samples = [] {
    std::vector<Sample> v;
    for (const Reply& r : resp2_replies()) {
      v.push_back({"resp2 " + r.bytes.substr(0, 24), {r}, "", St::NeedMore, 128, true});
    }
    for (const Reply& r : resp3_replies()) v.push_back({"resp3 " + r.bytes.substr(0, 24), {r}});
    v.push_back({"resp2 pipelined", resp2_replies(), "", St::NeedMore, 128, true});
    {
      std::vector<Reply> all = resp2_replies();
      all.insert(all.end(), resp3_replies().begin(), resp3_replies().end());
      v.push_back({"everything pipelined", all, "*2\r\n:1\r\n"});
    }
    // Incomplete.
    for (const char* tail : {"+OK", "+OK\r", "$3\r\nfo", "$3\r\nfoo\r", "$3\r", "*2\r\n:1\r\n",
                             "|1\r\n+a\r\n+b\r\n", "%1\r\n+a\r\n", ">2\r\n", "*1\r\n*1\r\n",
                             ":123", "=15\r\ntxt:"}) {
      v.push_back({"incomplete " + std::string(tail), {{"+OK\r\n", '+'}}, tail});
    }
    // Garbage.
    for (std::string tail :
         {"?\r\n"s, "hello\r\n"s, "\r\n"s, " +OK\r\n"s, "$?\r\n"s, "*?\r\n"s, "$-2\r\n"s,
          "*-2\r\n"s, "~-1\r\n"s, "%-1\r\n"s, "!-1\r\n"s, ">-1\r\n"s, "$3\r\nfooXY"s, "+OK\rX"s,
          "+OK\r\r\n"s, ":abc\r\n"s, ":\r\n"s, ":1.5\r\n"s, ":-\r\n"s,
          ":99999999999999999999\r\n"s, "#x\r\n"s, "#\r\n"s, "#tt\r\n"s, "_x\r\n"s, ",\r\n"s,
          ",1.5x\r\n"s, "(\r\n"s, "(12a\r\n"s, "(-\r\n"s, "=3\r\nabc\r\n"s, "=5\r\nabcde\r\n"s,
          "$4294967297\r\n"s, "%4611686018427387904\r\n"s, "*1\r\nx"s, "*2\r\n:1\r\n\0"s,
          "$ 3\r\nfoo\r\n"s, "$3 \r\nfoo\r\n"s}) {
      v.push_back({"garbage " + tail.substr(0, 24), {{":1\r\n", ':'}}, tail, St::Error});
    }
    v.push_back({"too deep", {}, repeat("*1\r\n", 200) + ":1\r\n", St::Error});
    v.push_back({"too deep for max_depth 3", {{"*1\r\n*1\r\n*1\r\n:1\r\n", '*'}},
                 "*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", St::Error, 3});
    v.push_back({"attributes count toward depth", {}, "*1\r\n|1\r\n*1\r\n:1\r\n:1\r\n:1\r\n",
                 St::Error, 2});
    return v;
  }();
  return samples;
}

std::string stream_of(const Sample& s) {
  std::string out;
  for (const Reply& r : s.replies) out += r.bytes;
  return out + s.tail;
}

}  // namespace

TEST_CASE("reply corpus: one-shot scan finds each reply's end and type", "[reply_scanner]") {
  for (const Sample& s : corpus()) {
    std::string bytes = stream_of(s);
    auto got = one_shot(bytes, s.max_depth);
    auto want = expected_trace(s);
    INFO(s.name << "\n want: " << describe(want) << "\n got:  " << describe(got));
    CHECK(got == want);
  }
}

TEST_CASE("reply corpus: split at every offset gives the one-shot answer", "[reply_scanner]") {
  for (const Sample& s : corpus()) {
    std::string bytes = stream_of(s);
    auto expected = one_shot(bytes, s.max_depth);
    bool need_more_ok = true;
    size_t mismatches = 0, first_bad = 0;
    for (size_t k = 0; k <= bytes.size(); ++k) {
      auto got = fed(bytes, {k}, s.max_depth, bytes.size() <= 4096, &need_more_ok);
      if (!(got == expected) && mismatches++ == 0) first_bad = k;
    }
    INFO(s.name << ": first mismatch at offset " << first_bad);
    CHECK(mismatches == 0);
    CHECK(need_more_ok);
  }
}

TEST_CASE("reply corpus: byte by byte gives the one-shot answer", "[reply_scanner]") {
  for (const Sample& s : corpus()) {
    std::string bytes = stream_of(s);
    auto expected = one_shot(bytes, s.max_depth);
    std::vector<size_t> cuts(bytes.size());
    for (size_t i = 0; i < cuts.size(); ++i) cuts[i] = i + 1;
    bool need_more_ok = true;
    auto got = fed(bytes, cuts, s.max_depth, bytes.size() <= 4096, &need_more_ok);
    INFO(s.name << "\n expected: " << describe(expected) << "\n got: " << describe(got));
    CHECK(got == expected);
    CHECK(need_more_ok);
  }
}

TEST_CASE("a big blob is not rescanned while it arrives", "[reply_scanner]") {
  std::string reply = "*2\r\n$" + std::to_string(4 << 20) + "\r\n" + std::string(4 << 20, 'x') +
                      "\r\n:1\r\n";
  ReplyScanner s;
  ScanResult r;
  for (size_t n = 1; n <= reply.size(); ++n) {
    r = s.scan(std::string_view(reply).substr(0, n));
    if (r.status != St::NeedMore) break;
  }
  REQUIRE(r.status == St::Ok);
  CHECK(r.consumed == reply.size());
}

TEST_CASE("a huge declared aggregate allocates nothing in proportion", "[reply_scanner]") {
  ReplyScanner s;
  std::string buf = "*9223372036854775807\r\n%4611686018427387903\r\n:1\r\n";
  CHECK(s.scan(buf).status == St::NeedMore);
  // The stack grows with nesting only, and nesting is bounded.
  ReplyScanner t(128);
  CHECK(t.scan(repeat("*9223372036854775807\r\n", 129)).status == St::Error);
}

// ---- hiredis agreement (RESP2) ----

namespace {

// Where hiredis's reader says each reply ends, feeding `stream` in chunks of `chunk` bytes.
// With chunk == 1 an end is the stream length at which the reply first comes out; otherwise it
// is read from the reader's cursor (fed - len + pos, which survives its buffer compaction).
struct HiredisReply {
  size_t end;
  int type;
};

// A hiredis error ends the list early, which the comparison reports.
std::vector<HiredisReply> hiredis_ends(std::string_view stream, size_t chunk) {
  redisReader* r = redisReaderCreate();
  std::vector<HiredisReply> out;
  size_t fed_bytes = 0;
  bool failed = false;
  while (fed_bytes < stream.size() && !failed) {
    size_t n = std::min(chunk, stream.size() - fed_bytes);
    failed = redisReaderFeed(r, stream.data() + fed_bytes, n) != REDIS_OK;
    fed_bytes += n;
    while (!failed) {
      void* reply = nullptr;
      failed = redisReaderGetReply(r, &reply) != REDIS_OK;
      if (!reply) break;
      size_t end = chunk == 1 ? fed_bytes : fed_bytes - r->len + r->pos;
      out.push_back({end, static_cast<redisReply*>(reply)->type});
      freeReplyObject(reply);
    }
  }
  redisReaderFree(r);
  return out;
}

std::vector<HiredisReply> scanner_ends(std::string_view stream) {
  ReplyScanner s;
  std::vector<HiredisReply> out;
  size_t off = 0;
  for (;;) {
    ScanResult r = s.scan(stream.substr(off));
    if (r.status != St::Ok) {
      REQUIRE(r.status == St::NeedMore);
      break;
    }
    off += r.consumed;
    int type = 0;
    switch (r.kind) {
      case '+': type = REDIS_REPLY_STATUS; break;
      case '-': type = REDIS_REPLY_ERROR; break;
      case ':': type = REDIS_REPLY_INTEGER; break;
      case '$': type = REDIS_REPLY_STRING; break;
      case '*': type = REDIS_REPLY_ARRAY; break;
    }
    out.push_back({off, type});
  }
  return out;
}

// Nulls are the same type byte as their non-null form for the scanner.
bool same_ends(const std::vector<HiredisReply>& h, const std::vector<HiredisReply>& s) {
  if (h.size() != s.size()) return false;
  for (size_t i = 0; i < h.size(); ++i) {
    if (h[i].end != s[i].end) return false;
    bool type_ok = h[i].type == s[i].type ||
                   (h[i].type == REDIS_REPLY_NIL &&
                    (s[i].type == REDIS_REPLY_STRING || s[i].type == REDIS_REPLY_ARRAY));
    if (!type_ok) return false;
  }
  return true;
}

// A random RESP2 value: statuses, errors, integers, bulks (binary, sometimes large), nulls and
// arrays nested up to `max_depth` (hiredis 0.14 reads at most 7 levels).
void random_resp2(std::mt19937_64& rng, int depth, int max_depth, std::string& out) {
  resp::Writer w(out, 2);
  auto text = [&](size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (auto& c : s) c = static_cast<char>(' ' + rng() % 95);
    return s;
  };
  int pick = static_cast<int>(rng() % (depth < max_depth ? 9 : 6));
  switch (pick) {
    case 0:
      w.simple(text(40));
      break;
    case 1:
      w.error("ERR " + text(40));
      break;
    case 2: {
      static const int64_t edges[] = {0, -1, 1, std::numeric_limits<int64_t>::min(),
                                      std::numeric_limits<int64_t>::max()};
      w.integer(rng() % 4 == 0 ? edges[rng() % 5] : static_cast<int64_t>(rng()));
      break;
    }
    case 3:
    case 4: {
      size_t roll = rng() % 100;
      size_t len = roll < 80 ? rng() % 50 : roll < 98 ? rng() % 2000 : rng() % 70000;
      std::string s(len, '\0');
      for (auto& c : s) c = static_cast<char>(rng() % 256);
      if (len >= 2 && rng() % 3 == 0) s.replace(rng() % (len - 1), 2, "\r\n");
      w.bulk(s);
      break;
    }
    case 5:
      if (rng() % 2) {
        w.null();
      } else {
        w.null_array();
      }
      break;
    default: {
      size_t n = rng() % 7;
      w.array(n);
      for (size_t i = 0; i < n; ++i) random_resp2(rng, depth + 1, max_depth, out);
      break;
    }
  }
}

}  // namespace

TEST_CASE("hiredis agrees on where each RESP2 corpus reply ends", "[reply_scanner][hiredis]") {
  for (const Sample& s : corpus()) {
    if (!s.resp2) continue;
    std::string bytes = stream_of(s);
    auto ours = scanner_ends(bytes);
    INFO(s.name);
    CHECK(same_ends(hiredis_ends(bytes, 1), ours));
    CHECK(same_ends(hiredis_ends(bytes, 1 << 20), ours));
  }
}

TEST_CASE("hiredis agrees on where random RESP2 replies end", "[reply_scanner][hiredis]") {
  const uint64_t seed = GENERATE(1, 2, 3, 20240601);
  std::mt19937_64 rng(seed);
  std::string stream;
  size_t count = 0;
  while (stream.size() < (1u << 20)) {
    random_resp2(rng, 0, 6, stream);
    ++count;
  }
  INFO("seed " << seed << ", " << count << " replies, " << stream.size() << " bytes");
  auto ours = scanner_ends(stream);
  REQUIRE(ours.size() == count);
  REQUIRE(ours.back().end == stream.size());
  CHECK(same_ends(hiredis_ends(stream, 4096), ours));
  CHECK(same_ends(hiredis_ends(stream, 1), ours));

  // And the scanner gives the same ends when the stream arrives in random pieces.
  std::vector<size_t> cuts;
  for (size_t at = 0; at < stream.size();) {
    at += 1 + rng() % (rng() % 2 ? 16 : 9000);
    cuts.push_back(std::min(at, stream.size()));
  }
  bool need_more_ok = true;
  auto chunked = fed(stream, cuts, 128, false, &need_more_ok);
  auto whole = one_shot(stream, 128);
  CHECK(chunked == whole);
  CHECK(need_more_ok);
}
