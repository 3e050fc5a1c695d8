#include <catch2/catch.hpp>

#include <deque>
#include <random>
#include <string>

#include "proxy/net/ring_queue.h"

using respite::RingQueue;

TEST_CASE("ring queue: behaves as a deque under random pushes and pops, across growth") {
  std::mt19937 rng(7);
  RingQueue<std::string> q;
  std::deque<std::string> model;
  for (int step = 0; step < 200000; ++step) {
    const unsigned op = rng() % 100;
    if (op < 55 || model.empty()) {
      std::string v = std::to_string(step);
      if (op % 2) q.push_back(v);
      else q.emplace_back() = v;
      model.push_back(v);
    } else {
      REQUIRE(q.front() == model.front());
      q.pop_front();
      model.pop_front();
    }
    REQUIRE(q.size() == model.size());
    if (!model.empty()) {
      REQUIRE(q.back() == model.back());
      const size_t i = rng() % model.size();
      REQUIRE(q[i] == model[i]);
    }
    if (step % 50000 == 0) {
      q.clear();
      model.clear();
    }
  }
}

TEST_CASE("ring queue: emplace_back gives a fresh element, a big idle array is released") {
  RingQueue<std::string> q;
  for (int i = 0; i < 3000; ++i) q.push_back(std::string(100, 'x'));
  CHECK(q.capacity() >= 3000);
  for (int i = 0; i < 2999; ++i) q.pop_front();
  CHECK(q.capacity() >= 3000);  // not empty yet: kept
  q.pop_front();
  CHECK(q.empty());
  CHECK(q.capacity() == 0);  // an idle burst's array goes
  for (int i = 0; i < 5; ++i) q.push_back("y");
  for (int i = 0; i < 5; ++i) q.pop_front();
  CHECK(q.capacity() == 8);  // a small one stays for the next requests
  CHECK(q.emplace_back().empty());  // popped elements were reset
}

TEST_CASE("ring queue: a popped element gives back what it owned") {
  RingQueue<std::string> q;
  q.push_back(std::string(1 << 20, 'x'));
  q.push_back("small");
  q.pop_front();
  q.pop_front();
  for (int i = 0; i < 2; ++i) CHECK(q.emplace_back().capacity() < 1000);
}
