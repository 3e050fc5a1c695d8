#include <catch2/catch.hpp>

#include "cache/memory_units.h"

using cache::parse_memory;

TEST_CASE("parse_memory: plain bytes and the b unit") {
  CHECK(parse_memory("0") == 0u);
  CHECK(parse_memory("123") == 123u);
  CHECK(parse_memory("123b") == 123u);
  CHECK(parse_memory("123B") == 123u);
  CHECK(parse_memory("18446744073709551615") == 18446744073709551615ull);
}

TEST_CASE("parse_memory: redis.conf units, k = 1000, kb = 1024") {
  CHECK(parse_memory("1k") == 1000u);
  CHECK(parse_memory("1kb") == 1024u);
  CHECK(parse_memory("512kb") == 512u * 1024);
  CHECK(parse_memory("2m") == 2'000'000u);
  CHECK(parse_memory("64mb") == 64ull << 20);
  CHECK(parse_memory("3g") == 3'000'000'000ull);
  CHECK(parse_memory("1gb") == 1ull << 30);
}

TEST_CASE("parse_memory: units are case-insensitive") {
  CHECK(parse_memory("64MB") == 64ull << 20);
  CHECK(parse_memory("64Mb") == 64ull << 20);
  CHECK(parse_memory("64mB") == 64ull << 20);
  CHECK(parse_memory("1K") == 1000u);
  CHECK(parse_memory("1GB") == 1ull << 30);
}

TEST_CASE("parse_memory: rejects what redis.conf would not mean") {
  for (const char* bad : {"", "mb", "-1", "+1", " 1", "1 ", "1.5gb", "1kbb", "1tb", "1x", "1bb",
                          "1kB2", "0x10", "18446744073709551616", "17179869184gb"}) {
    INFO(bad);
    CHECK_FALSE(parse_memory(bad).has_value());
  }
}
