#pragma once

/// @file
/// A FIFO queue on a vector: the delivery loop's queue of requests, without std::deque's code.

#include <cstddef>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// A first-in first-out queue on a vector: pushed at the back, read from a moving front, emptied
/// when the front reaches the back. Unlike std::deque it allocates nothing until the first push
/// (an empty libstdc++ deque allocates twice), and a send opens one of these per request batch.
template <class T>
class VectorQueue {
  public:
    bool empty() const noexcept { return front_ == items_.size(); }
    void push(T item) { items_.push_back(std::move(item)); }
    /// The oldest item, removed. The queue must not be empty.
    T pop() {
        T item = std::move(items_[front_++]);
        if (front_ == items_.size()) {
            items_.clear();
            front_ = 0;
        }
        return item;
    }

  private:
    std::vector<T> items_;
    std::size_t front_ = 0;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
