// libFuzzer target for resp::RequestParser.
//
// Input: byte 0 picks the limits (default or small ones, authenticated or not), byte 1 seeds the
// random split, the rest is the client's byte stream. The stream is parsed as a sequence of
// requests three ways, and the three traces must be identical (status, error, offending byte,
// consumed, inline or not, arguments, raw bytes, and what is left over at the end):
//   - one shot: the whole stream in one buffer;
//   - byte by byte: one more byte per call, the consumed bytes erased from the front;
//   - random split: chunks of random sizes, a different Frame object on some calls.
// In the two incremental modes every call gets a fresh heap copy of exactly the buffered bytes,
// so the parser cannot keep a pointer into an old buffer or read past the end unnoticed.
// Every call also checks that no single allocation exceeds a bound proportional to the bytes
// given (a declared count must never become an allocation), and that NeedMore's want() asks for
// more than what is buffered.
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "resp/request_parser.h"
#include "fuzz_common.h"

namespace {

using resp::ErrorCode;
using resp::Frame;
using resp::Limits;
using resp::RequestParser;
using resp::Result;
using resp::Status;

struct Event {
  Status status = Status::NeedMore;
  ErrorCode error = ErrorCode::None;
  char bad = 0;
  size_t consumed = 0;  // Ok; for the final NeedMore: bytes left over
  bool is_inline = false;
  std::vector<std::string> args;
  std::string raw;
  bool operator==(const Event&) const = default;
};

Limits limits_from(uint8_t b) {
  Limits l;
  if (b & 1) {
    l.unauthenticated = true;
    l.unauth_max_multibulk = (b >> 4) & 7;   // 0..7
    l.unauth_max_bulk = ((b >> 4) & 15) * 3;  // 0..45
  }
  if (b & 2) {  // small limits, so that the fuzzer reaches them with short inputs
    l.max_inline = 4 + ((b >> 2) & 15) * 4;  // 4..64
    l.max_bulk = (b >> 3) & 31;              // 0..31
    l.max_multibulk = 1 + ((b >> 5) & 7);    // 1..8
  }
  return l;
}

// One parse() call with the allocation probe armed, plus the per-call checks.
Result checked_parse(RequestParser& p, std::string_view buf, Frame& frame) {
  Result r;
  {
    fuzz::alloc::Scope probe;
    r = p.parse(buf, frame);
  }
  // Inline: the unescaped copy (<= the line) and one 16-byte span per argument (<= one per two
  // bytes), each in a vector that may have doubled. Multibulk: spans only, at most one per six
  // bytes. 32 bytes per input byte and some slack covers both with room to spare; a declared
  // count (up to 2^31 elements or 512 MB bulks) would blow far past it.
  const size_t bound = 32 * buf.size() + 1024;
  FUZZ_CHECK(fuzz::alloc::largest <= bound, fuzz::alloc::largest, buf.size());
  switch (r.status) {
    case Status::Ok:
      FUZZ_CHECK(r.consumed > 0 && r.consumed <= buf.size(), r.consumed, buf.size());
      FUZZ_CHECK(frame.raw().size() == r.consumed, frame.raw().size(), r.consumed);
      FUZZ_CHECK(frame.raw().data() == buf.data());
      FUZZ_CHECK(r.error == ErrorCode::None);
      for (size_t i = 0; i < frame.argc(); ++i) {
        std::string_view a = frame.arg(i);
        if (!frame.is_inline() && !a.empty()) {  // multibulk arguments point into the request
          FUZZ_CHECK(a.data() >= buf.data() && a.data() + a.size() <= buf.data() + r.consumed);
        }
      }
      break;
    case Status::NeedMore:
      FUZZ_CHECK(r.consumed == 0 && frame.argc() == 0);
      FUZZ_CHECK(p.want() > buf.size(), p.want(), buf.size());
      break;
    case Status::Error:
      FUZZ_CHECK(r.error != ErrorCode::None && frame.argc() == 0);
      FUZZ_CHECK(!resp::error_text(r.error, r.bad).empty());
      break;
  }
  return r;
}

Event record(const Result& r, const Frame& f) {
  Event e;
  e.status = r.status;
  e.error = r.error;
  e.bad = r.error == ErrorCode::ExpectedDollar ? r.bad : 0;
  e.consumed = r.consumed;
  if (r.status == Status::Ok) {
    e.is_inline = f.is_inline();
    for (size_t i = 0; i < f.argc(); ++i) e.args.emplace_back(f.arg(i));
    e.raw.assign(f.raw());
  }
  return e;
}

std::vector<Event> one_shot(std::string_view data, const Limits& limits) {
  std::vector<Event> trace;
  RequestParser p(limits);
  Frame frame;
  size_t off = 0;
  for (;;) {
    std::string_view rest = data.substr(off);
    Result r = checked_parse(p, rest, frame);
    if (r.status == Status::Ok) {
      trace.push_back(record(r, frame));
      off += r.consumed;
      continue;
    }
    Event e = record(r, frame);
    if (r.status == Status::NeedMore) e.consumed = rest.size();
    trace.push_back(std::move(e));
    return trace;
  }
}

// Feeds `data` in chunks whose sizes come from next_chunk().
template <class NextChunk>
std::vector<Event> chunked(std::string_view data, const Limits& limits, NextChunk next_chunk,
                           fuzz::Rng* frame_rng) {
  std::vector<Event> trace;
  RequestParser p(limits);
  Frame frames[2];
  std::string pending;
  size_t fed = 0;
  while (fed < data.size()) {
    size_t n = next_chunk(data.size() - fed);
    pending.append(data.substr(fed, n));
    fed += n;
    for (;;) {
      // A fresh allocation of exactly the buffered bytes on every call.
      std::unique_ptr<char[]> copy(new char[pending.size() + 1]);
      std::memcpy(copy.get(), pending.data(), pending.size());
      std::string_view view(copy.get(), pending.size());
      Frame& frame = frame_rng ? frames[frame_rng->below(2)] : frames[0];
      Result r = checked_parse(p, view, frame);
      if (r.status == Status::NeedMore) break;
      trace.push_back(record(r, frame));
      if (r.status == Status::Error) return trace;
      pending.erase(0, r.consumed);
    }
  }
  // The last call (or none, for an empty stream) said NeedMore.
  std::unique_ptr<char[]> copy(new char[pending.size() + 1]);
  std::memcpy(copy.get(), pending.data(), pending.size());
  Frame frame;
  Result r = checked_parse(p, std::string_view(copy.get(), pending.size()), frame);
  FUZZ_CHECK(r.status == Status::NeedMore);
  Event e = record(r, frame);
  e.consumed = pending.size();
  trace.push_back(std::move(e));
  return trace;
}

void compare(const std::vector<Event>& a, const std::vector<Event>& b, const char* what) {
  if (a == b) return;
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::fprintf(stderr, "%s differs from one-shot at event %zu (of %zu / %zu)\n", what, i,
               a.size(), b.size());
  if (i < a.size() && i < b.size()) {
    std::fprintf(stderr, "  one-shot: status %d error %d consumed %zu argc %zu\n",
                 static_cast<int>(a[i].status), static_cast<int>(a[i].error), a[i].consumed,
                 a[i].args.size());
    std::fprintf(stderr, "  %s: status %d error %d consumed %zu argc %zu\n", what,
                 static_cast<int>(b[i].status), static_cast<int>(b[i].error), b[i].consumed,
                 b[i].args.size());
  }
  fuzz::fail("traces differ");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::alloc::install();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2) return 0;
  const Limits limits = limits_from(bytes[0]);
  const uint8_t seed = bytes[1];
  std::string_view data(reinterpret_cast<const char*>(bytes) + 2, size - 2);

  const std::vector<Event> base = one_shot(data, limits);

  compare(base, chunked(data, limits, [](size_t) { return size_t{1}; }, nullptr),
          "byte-by-byte");

  fuzz::Rng rng{0x9e3779b97f4a7c15ULL ^ (uint64_t{seed} * 0x100000001b3ULL) ^ data.size()};
  fuzz::Rng frame_rng{rng.next() | 1};
  compare(base,
          chunked(data, limits, [&](size_t left) { return 1 + rng.below(left < 64 ? left : 64); },
                  &frame_rng),
          "random-split");
  return 0;
}
