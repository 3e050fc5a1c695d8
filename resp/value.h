// A small decoder for replies respite must understand itself (control plane: HELLO, INFO,
// CLIENT ID, SENTINEL and CLUSTER replies, the value and TTL of a cache fill). The data path
// relays replies as bytes and never decodes them.
//
// decode(buf, out) decodes the reply at the start of `buf` into a tree. It first runs a
// ReplyScanner over the bytes, so it has the same contract: NeedMore (nothing decoded), Ok
// (`consumed` bytes decoded into `out`) or Error (not RESP). Nesting is bounded by max_depth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "resp/reply_scanner.h"

namespace resp {

struct Value {
  char type = 0;        // the RESP type byte: + - : $ * _ , # ! = ( % ~ >
  bool null = false;    // `$-1`, `*-1` (type '$' / '*') or `_`
  std::string str;      // text of + - $ ! ( , ; for `=` the text after "fmt:"
  std::string format;   // `=` only: its three-byte format ("txt", "mkd")
  int64_t integer = 0;  // `:`; `#` is 1 or 0
  double dbl = 0;       // `,`
  std::vector<Value> elements;    // * ~ > as sent; `%` flattened: key, value, key, value ...
  std::vector<Value> attributes;  // `|` pairs sent before this value, flattened the same way

  bool is_error() const { return type == '-' || type == '!'; }
  bool is_null() const { return null; }
  // A string of any flavour (simple, bulk, verbatim) that is not null.
  bool is_string() const { return !null && (type == '+' || type == '$' || type == '='); }
  bool is_aggregate() const {
    return !null && (type == '*' || type == '%' || type == '~' || type == '>');
  }
};

struct DecodeResult {
  ScanResult::Status status = ScanResult::Status::NeedMore;
  size_t consumed = 0;
};

DecodeResult decode(std::string_view buf, Value& out, size_t max_depth = 128);

}  // namespace resp
