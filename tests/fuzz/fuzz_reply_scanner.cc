// libFuzzer target for resp::ReplyScanner, resp::decode and resp::Writer.
//
// Input: byte 0 picks the scanner's depth bound (small ones reach the limit), byte 1 seeds the
// random split, the rest is an upstream byte stream, scanned as a sequence of replies:
//   - one shot == byte by byte == random split: same statuses, consumed counts, kinds and
//     push/error flags, and the same bytes left over at the end (fresh heap copy per call, as in
//     fuzz_request_parser);
//   - decode() on the same bytes agrees with scan(): same status, same consumed;
//   - resp::ReplyView walks each decoded reply as decode()'s tree in pre-order, to its end;
//   - writer round trip: each decoded value re-encoded with resp::Writer (RESP3, attributes
//     written back as `|` headers) scans as exactly one reply of exactly the encoded size, and so
//     does its RESP2 encoding; decoding the RESP3 encoding and encoding again gives the same
//     bytes (the writer's normalisations, such as CR/LF in simple strings, apply once); and all
//     the encodings concatenated scan back to the same reply boundaries.
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "resp/reply_scanner.h"
#include "resp/reply_writer.h"
#include "resp/value.h"
#include "fuzz_common.h"
#include "reply_view_check.h"

namespace {

using resp::DecodeResult;
using resp::ReplyScanner;
using resp::ScanResult;
using resp::Value;
using resp::Writer;
using St = ScanResult::Status;

struct Event {
  St status = St::NeedMore;
  size_t consumed = 0;  // Ok; for the final NeedMore: bytes left over
  char kind = 0;
  bool is_push = false;
  bool is_error = false;
  bool operator==(const Event&) const = default;
};

ScanResult checked_scan(ReplyScanner& s, std::string_view buf) {
  ScanResult r;
  {
    fuzz::alloc::Scope probe;
    r = s.scan(buf);
  }
  // The only allocation is the stack of open aggregates, bounded by max_depth (<= 128 here).
  FUZZ_CHECK(fuzz::alloc::largest <= 4096, fuzz::alloc::largest, buf.size());
  if (r.status == St::Ok) {
    FUZZ_CHECK(r.consumed > 0 && r.consumed <= buf.size(), r.consumed, buf.size());
    FUZZ_CHECK(r.is_push == (r.kind == '>'));
    FUZZ_CHECK(r.is_error == (r.kind == '-' || r.kind == '!'));
  } else {
    FUZZ_CHECK(r.consumed == 0);
  }
  return r;
}

Event record(const ScanResult& r) { return {r.status, r.consumed, r.kind, r.is_push, r.is_error}; }

std::vector<Event> one_shot(std::string_view data, size_t depth,
                            std::vector<size_t>* starts = nullptr) {
  std::vector<Event> trace;
  ReplyScanner s(depth);
  size_t off = 0;
  for (;;) {
    std::string_view rest = data.substr(off);
    ScanResult r = checked_scan(s, rest);
    if (starts) starts->push_back(off);
    Event e = record(r);
    if (r.status == St::NeedMore) e.consumed = rest.size();
    trace.push_back(e);
    if (r.status != St::Ok) return trace;
    off += r.consumed;
  }
}

template <class NextChunk>
std::vector<Event> chunked(std::string_view data, size_t depth, NextChunk next_chunk) {
  std::vector<Event> trace;
  ReplyScanner s(depth);
  std::string pending;
  size_t fed = 0;
  auto scan_copy = [&]() {
    std::unique_ptr<char[]> copy(new char[pending.size() + 1]);
    std::memcpy(copy.get(), pending.data(), pending.size());
    return checked_scan(s, std::string_view(copy.get(), pending.size()));
  };
  while (fed < data.size()) {
    size_t n = next_chunk(data.size() - fed);
    pending.append(data.substr(fed, n));
    fed += n;
    for (;;) {
      ScanResult r = scan_copy();
      if (r.status == St::NeedMore) break;
      trace.push_back(record(r));
      if (r.status == St::Error) return trace;
      pending.erase(0, r.consumed);
    }
  }
  ScanResult r = scan_copy();
  FUZZ_CHECK(r.status == St::NeedMore);
  Event e = record(r);
  e.consumed = pending.size();
  trace.push_back(e);
  return trace;
}

void compare(const std::vector<Event>& a, const std::vector<Event>& b, const char* what) {
  if (a == b) return;
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::fprintf(stderr, "%s differs from one-shot at reply %zu (of %zu / %zu)\n", what, i,
               a.size(), b.size());
  if (i < a.size() && i < b.size()) {
    std::fprintf(stderr, "  one-shot: status %d consumed %zu kind %c\n",
                 static_cast<int>(a[i].status), a[i].consumed, a[i].kind);
    std::fprintf(stderr, "  %s: status %d consumed %zu kind %c\n", what,
                 static_cast<int>(b[i].status), b[i].consumed, b[i].kind);
  }
  fuzz::fail("traces differ");
}

void encode(Writer& w, std::string& out, const Value& v) {
  if (w.proto() >= 3 && !v.attributes.empty()) {
    out += '|';
    out += std::to_string(v.attributes.size() / 2);
    out += "\r\n";
    for (const Value& a : v.attributes) encode(w, out, a);
  }
  auto elements = [&] {
    for (const Value& e : v.elements) encode(w, out, e);
  };
  switch (v.type) {
    case '+': w.simple(v.str); break;
    case '-':
    case '!': w.error("-" + v.str); break;  // error() drops one leading '-': keep the text's
    case ':': w.integer(v.integer); break;
    case '_': w.null(); break;
    case ',': w.dbl(v.dbl); break;
    case '#': w.boolean(v.integer != 0); break;
    case '(': w.big_number(v.str); break;
    case '=': w.verbatim(v.format, v.str); break;
    case '$':
      if (v.null) {
        w.null();
      } else {
        w.bulk(v.str);
      }
      break;
    case '*':
      if (v.null) {
        w.null_array();
      } else {
        w.array(v.elements.size());
        elements();
      }
      break;
    case '%':
      FUZZ_CHECK(v.elements.size() % 2 == 0);
      w.map(v.elements.size() / 2);
      elements();
      break;
    case '~': w.set(v.elements.size()); elements(); break;
    case '>': w.push(v.elements.size()); elements(); break;
    default: fuzz::fail("decode produced an unknown type", static_cast<unsigned char>(v.type));
  }
}

std::string encoded(const Value& v, int proto) {
  std::string out;
  Writer w(out, proto);
  encode(w, out, v);
  return out;
}

// The encoding scans (and decodes) as exactly one reply of exactly its size.
void check_one_reply(std::string_view bytes, size_t depth) {
  ReplyScanner s(depth);
  ScanResult r = checked_scan(s, bytes);
  FUZZ_CHECK(r.status == St::Ok && r.consumed == bytes.size(), r.consumed, bytes.size());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::alloc::install();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2) return 0;
  const size_t depth = bytes[0] < 128 ? 1 + bytes[0] % 8 : 128;
  const uint8_t seed = bytes[1];
  std::string_view data(reinterpret_cast<const char*>(bytes) + 2, size - 2);

  std::vector<size_t> starts;
  const std::vector<Event> base = one_shot(data, depth, &starts);

  compare(base, chunked(data, depth, [](size_t) { return size_t{1}; }), "byte-by-byte");
  fuzz::Rng rng{0x9e3779b97f4a7c15ULL ^ (uint64_t{seed} * 0x100000001b3ULL) ^ data.size()};
  compare(base, chunked(data, depth, [&](size_t left) { return 1 + rng.below(left < 64 ? left : 64); }),
          "random-split");

  // decode() agrees with scan() at every reply start; then the writer round trip.
  std::string all3;
  std::vector<size_t> ends3;
  for (size_t i = 0; i < base.size(); ++i) {
    Value v;
    DecodeResult d = resp::decode(data.substr(starts[i]), v, depth);
    FUZZ_CHECK(d.status == base[i].status, static_cast<size_t>(d.status),
               static_cast<size_t>(base[i].status));
    if (d.status != St::Ok) break;
    FUZZ_CHECK(d.consumed == base[i].consumed, d.consumed, base[i].consumed);
    if (std::string e = reply_view_check::check(data.substr(starts[i], d.consumed), v); !e.empty())
      fuzz::fail(e.c_str(), starts[i], d.consumed);

    const std::string e3 = encoded(v, 3);
    check_one_reply(e3, depth);
    check_one_reply(encoded(v, 2), depth);
    Value v2;
    DecodeResult d2 = resp::decode(e3, v2, depth);
    FUZZ_CHECK(d2.status == St::Ok && d2.consumed == e3.size(), d2.consumed, e3.size());
    const std::string again = encoded(v2, 3);
    FUZZ_CHECK(again == e3, again.size(), e3.size());
    all3 += e3;
    ends3.push_back(all3.size());
  }
  std::vector<size_t> starts3;
  std::vector<Event> t3 = one_shot(all3, depth, &starts3);
  FUZZ_CHECK(t3.size() == ends3.size() + 1, t3.size(), ends3.size());
  for (size_t i = 0; i < ends3.size(); ++i) {
    FUZZ_CHECK(t3[i].status == St::Ok && starts3[i] + t3[i].consumed == ends3[i], i, ends3[i]);
  }
  FUZZ_CHECK(t3.back().status == St::NeedMore && t3.back().consumed == 0);
  return 0;
}
