// A FIFO over one growable circular array, for the per-connection queues that every request
// passes through (a client's reply slots, an upstream connection's pending replies).
//
// Why not std::deque: it allocates and frees a 512-byte block every few elements as the queue
// moves, on every connection, all the time. Besides the cost, those short-lived blocks were
// freed between cache entries being filled and the allocator carved entries out of them,
// leaving unusable slivers (RSS per cached entry grew by several bytes). This queue grows by
// doubling and keeps its array, unless it runs empty with more than kKeepIdle slots: then a
// burst is over and the array goes, so a burst's peak is not pinned for the connection's life.
//
// Contract: like deque's front/back/push_back/emplace_back/pop_front/[]/size/clear. An element
// is destroyed (reset to T{}) when popped or cleared, so what it owned goes at once.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace respite {

template <class T>
class RingQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t capacity() const { return buf_.size(); }

  T& operator[](size_t i) { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  const T& operator[](size_t i) const { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  T& front() { return buf_[head_]; }
  T& back() { return (*this)[size_ - 1]; }

  T& emplace_back() {
    if (size_ == buf_.size()) grow();
    T& t = buf_[(head_ + size_) & (buf_.size() - 1)];
    size_++;
    return t;  // a fresh T{}: popped elements are reset
  }
  void push_back(T v) { emplace_back() = std::move(v); }

  static constexpr size_t kKeepIdle = 1024;

  void pop_front() {
    { [[maybe_unused]] T gone = std::move(buf_[head_]); }  // takes what it owned (assigning
                                                            // T{} leaves a string its buffer)
    buf_[head_] = T{};
    head_ = (head_ + 1) & (buf_.size() - 1);
    if (--size_ == 0) {
      head_ = 0;
      if (buf_.size() > kKeepIdle) std::vector<T>().swap(buf_);
    }
  }

  void clear() {
    while (!empty()) pop_front();
  }

  void swap(RingQueue& o) noexcept {
    buf_.swap(o.buf_);
    std::swap(head_, o.head_);
    std::swap(size_, o.size_);
  }

 private:
  void grow() {
    std::vector<T> next(buf_.empty() ? 8 : buf_.size() * 2);
    for (size_t i = 0; i < size_; ++i) next[i] = std::move((*this)[i]);
    buf_.swap(next);
    head_ = 0;
  }

  std::vector<T> buf_;  // size is 0 or a power of two; unused elements hold T{}
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace respite
