// The property that ties resp::ReplyView to resp::decode: walking a reply with the view yields
// decode()'s tree in pre-order (an attribute's `|` header and pairs before the value they
// annotate, then each aggregate's header before its elements), and then the end of the bytes.
// Used by the reply scanner's fuzz target and by its unit tests.
#pragma once

#include <string>
#include <string_view>

#include "resp/reply_view.h"
#include "resp/value.h"

namespace reply_view_check {

// Empty when `view` walks exactly `v`; else what differed first.
inline std::string walk(const resp::Value& v, resp::ReplyView& view) {
  resp::ReplyItem it;
  // Attribute blocks (`|`, any number, even empty ones) come first; decode() gathers their
  // pairs into v.attributes.
  size_t attr = 0;
  for (;;) {
    if (!view.next(it)) return std::string("no item for type ") + v.type;
    if (it.type != '|') break;
    for (int64_t i = 0; i < it.n; ++i, ++attr) {
      if (attr >= v.attributes.size()) return "more attribute items than decoded";
      if (std::string e = walk(v.attributes[attr], view); !e.empty()) return e;
    }
  }
  if (attr != v.attributes.size()) return "fewer attribute items than decoded";
  if (it.type != v.type) return std::string("type ") + it.type + " for " + v.type;
  if (it.null != v.null) return "null differs";
  if (v.null) return {};
  switch (v.type) {
    case '+':
    case '-':
    case '$':
    case '!':
    case '(':
    case ',':
      if (it.str != v.str) return "text differs";
      break;
    case '=':
      if (it.str != (v.format.empty() ? v.str : v.format + ":" + v.str))
        return "verbatim text differs";
      break;
    case ':':
    case '#':
      if (it.n != v.integer) return "integer differs";
      break;
    case '*':
    case '~':
    case '>':
    case '%':
      if (it.n != static_cast<int64_t>(v.elements.size())) return "aggregate count differs";
      for (const resp::Value& e : v.elements)
        if (std::string err = walk(e, view); !err.empty()) return err;
      break;
    default:
      break;
  }
  return {};
}

// Walks one whole reply (the bytes decode() consumed for `v`).
inline std::string check(std::string_view reply, const resp::Value& v) {
  resp::ReplyView view(reply);
  if (std::string e = walk(v, view); !e.empty()) return e;
  if (!view.at_end()) return "bytes left after the reply";
  return {};
}

}  // namespace reply_view_check
