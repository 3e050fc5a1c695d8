// Encodes replies respite writes itself (local commands, cache hits, errors), appending to a
// caller-owned buffer. Protocol-aware where RESP2 and RESP3 differ (null, map, set, double,
// boolean, verbatim, push); `proto` is 2 or 3.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace resp {

class Frame;

class Writer {
 public:
  explicit Writer(std::string& out, int proto = 2) : out_(out), proto_(proto) {}
  int proto() const { return proto_; }

  // simple() and error() replace CR and LF with spaces (as Redis's addReplyErrorFormat does) so
  // text taken from a client can never break the framing. error() adds the '-' unless `s`
  // already starts with one.
  void simple(std::string_view s);          // +OK
  void error(std::string_view s);           // -ERR ... (text without '-' and CRLF)
  void integer(int64_t v);                  // :1
  void bulk(std::string_view s);            // $3\r\nfoo
  void null();                              // $-1 (RESP2) or _ (RESP3)
  void null_array();                        // *-1 (RESP2) or _ (RESP3)
  void array(size_t n);                     // *n
  void map(size_t pairs);                   // %n (RESP3) or *2n (RESP2)
  void set(size_t n);                       // ~n (RESP3) or *n (RESP2)
  void push(size_t n);                      // >n (RESP3) or *n (RESP2)
  void boolean(bool b);                     // #t (RESP3) or :1 (RESP2)
  // Formatted like Redis 7.0 (printf "%.17g"; infinities as "inf"/"-inf").
  void dbl(double d);                       // ,1.5 (RESP3) or bulk "1.5" (RESP2)
  // `fmt3` is padded with spaces or cut to three bytes, as Redis's addReplyVerbatim does.
  void verbatim(std::string_view fmt3, std::string_view s);  // =len\r\ntxt:... or bulk (RESP2)
  void big_number(std::string_view digits); // (123 (RESP3) or bulk "123" (RESP2)
  // Bytes appended unchanged (a relayed or cached reply that is already RESP).
  void raw(std::string_view bytes) { out_.append(bytes); }
  // A command as a multibulk request (for forwarding re-encoded inline requests).
  void command_header(size_t argc) { array(argc); }
  void command(std::initializer_list<std::string_view> args);
  void command(const Frame& frame);  // every argument of a parsed request, as multibulk

 private:
  void header(char type, int64_t n);
  void line(char type, std::string_view s);
  std::string& out_;
  int proto_;
};

}  // namespace resp
