// A growable byte buffer with a read and a write position: reads from a socket land at the
// tail, parsing consumes from the head. Consumed space is reclaimed by compacting before growing,
// so a steady pipeline reuses one allocation.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace respite {

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(data_); }

  std::string_view readable() const { return {data_ + rpos_, wpos_ - rpos_}; }
  size_t size() const { return wpos_ - rpos_; }
  bool empty() const { return wpos_ == rpos_; }
  size_t capacity() const { return cap_; }

  void consume(size_t n) {
    rpos_ += n;
    if (rpos_ == wpos_) rpos_ = wpos_ = 0;
  }

  // Returns space for at least `n` bytes at the tail (compacting or growing as needed).
  char* prepare(size_t n, size_t* avail) {
    if (cap_ - wpos_ < n) {
      if (rpos_ > 0) {
        std::memmove(data_, data_ + rpos_, wpos_ - rpos_);
        wpos_ -= rpos_;
        rpos_ = 0;
      }
      if (cap_ - wpos_ < n) {
        size_t want = cap_ ? cap_ : 16384;
        while (want - wpos_ < n) want *= 2;
        char* p = static_cast<char*>(std::realloc(data_, want));
        if (!p) throw std::bad_alloc();
        data_ = p;
        cap_ = want;
      }
    }
    *avail = cap_ - wpos_;
    return data_ + wpos_;
  }
  void commit(size_t n) { wpos_ += n; }

  void append(std::string_view s) {
    size_t avail;
    std::memcpy(prepare(s.size(), &avail), s.data(), s.size());
    commit(s.size());
  }

  // Gives memory back when an idle buffer grew large (e.g. after one big request).
  void shrink_if_idle(size_t keep = 65536) {
    if (empty() && cap_ > keep) {
      std::free(data_);
      data_ = nullptr;
      cap_ = rpos_ = wpos_ = 0;
    }
  }

 private:
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t rpos_ = 0;
  size_t wpos_ = 0;
};

}  // namespace respite
