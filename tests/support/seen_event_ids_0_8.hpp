#pragma once

/// @file
/// 0.8.0's InMemorySeenEventIds (a set of strings and a queue of copies): the oracle that the
/// ring replacing it must agree with, id for id (test_webhook, fuzz_webhook).

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace test_support {

class SeenEventIds08 {
  public:
    explicit SeenEventIds08(std::size_t capacity) : capacity_(capacity) {}

    bool first_time(std::string_view id) {
        std::string key(id);
        if (!ids_.insert(key).second) return false;
        order_.push_back(std::move(key));
        if (order_.size() > capacity_) {
            ids_.erase(order_.front());
            order_.pop_front();
        }
        return true;
    }

  private:
    std::size_t capacity_;
    std::unordered_set<std::string> ids_;
    std::deque<std::string> order_;
};

}  // namespace test_support
