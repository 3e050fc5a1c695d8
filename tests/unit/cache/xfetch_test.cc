#include <catch2/catch.hpp>
#include <cmath>

#include "cache/xfetch.h"

using cache::should_refresh_early;

TEST_CASE("xfetch: refresh iff now - delta*beta*ln(rand) >= expiry") {
  // delta 100, beta 1, expiry 1000. rand = e^-1 pushes now forward by exactly 100.
  const double r = std::exp(-1.0);
  CHECK(should_refresh_early(900, 1000, 100, 1.0, r));
  CHECK_FALSE(should_refresh_early(899, 1000, 100, 1.0, r));
  // beta scales the reach: beta 2 reaches 200 early with the same draw.
  CHECK(should_refresh_early(800, 1000, 100, 2.0, r));
  CHECK_FALSE(should_refresh_early(799, 1000, 100, 2.0, r));
  // A draw of 1 never refreshes a live entry; rand near 0 reaches far.
  CHECK_FALSE(should_refresh_early(999, 1000, 100, 1.0, 1.0));
  CHECK(should_refresh_early(0, 1000, 100, 1.0, 1e-10));
}

TEST_CASE("xfetch: rand 0 means refresh now") {
  CHECK(should_refresh_early(0, 1e12, 1, 1.0, 0.0));
}

TEST_CASE("xfetch: beta 0 or no measured fetch time: only once expired") {
  CHECK_FALSE(should_refresh_early(999, 1000, 100, 0.0, 1e-300));
  CHECK_FALSE(should_refresh_early(999, 1000, 0, 1.0, 1e-300));
  CHECK(should_refresh_early(1000, 1000, 100, 0.0, 0.5));
}

TEST_CASE("xfetch: the refresh probability matches exp(-(expiry-now)/(delta*beta))") {
  // Over a uniform grid of draws, the fraction refreshing at distance d = delta from expiry is
  // P(-ln r >= 1) = e^-1.
  int hits = 0;
  const int n = 100000;
  for (int i = 1; i <= n; i++) {
    if (should_refresh_early(900, 1000, 100, 1.0, static_cast<double>(i) / n)) hits++;
  }
  CHECK(std::abs(static_cast<double>(hits) / n - std::exp(-1.0)) < 0.001);
}
