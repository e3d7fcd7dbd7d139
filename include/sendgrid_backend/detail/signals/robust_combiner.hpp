#pragma once

/// @file
/// The combiner of every library signal: plain emissions as Boost's default, robust ones collect.

#include <exception>
#include <utility>
#include <vector>

#include <boost/signals2/expired_slot.hpp>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Where the next robust emission on this thread collects handler exceptions; null means
/// "propagate". One pointer for every signal: the combiner takes it (and resets it) before it
/// calls the first handler, so an emission that a handler starts never inherits it.
inline thread_local std::vector<std::exception_ptr>* robust_sink = nullptr;

/// Sets `robust_sink` for one emission and clears it again even if the emission never reached
/// the combiner (an allocation failure inside Boost, say).
class RobustSinkScope {
  public:
    explicit RobustSinkScope(std::vector<std::exception_ptr>* sink) noexcept { robust_sink = sink; }
    ~RobustSinkScope() { robust_sink = nullptr; }
    RobustSinkScope(const RobustSinkScope&) = delete;
    RobustSinkScope& operator=(const RobustSinkScope&) = delete;
};

/// The combiner of every library signal. Plain emissions behave like Boost's default
/// (`optional_last_value<void>`): the first handler exception propagates and the remaining
/// handlers are not called, as with Django's `Signal.send`. Robust emissions call every handler
/// and collect what they throw, as with `Signal.send_robust`. Choosing per call instead of per
/// signal keeps one slot list, so both forms see exactly the same handlers.
struct RobustAwareCombiner {
    using result_type = void;

    template <class SlotIterator>
    void operator()(SlotIterator first, SlotIterator last) const {
        std::vector<std::exception_ptr>* const sink = std::exchange(robust_sink, nullptr);
        if (sink == nullptr) {
            for (; first != last; ++first) {
                try {
                    *first;
                } catch (const boost::signals2::expired_slot&) {
                    // The tracked owner died mid-emission: the handler is simply gone.
                }
            }
            return;
        }
        for (; first != last; ++first) {
            try {
                *first;
            } catch (const boost::signals2::expired_slot&) {
            } catch (...) {
                sink->push_back(std::current_exception());
            }
        }
    }
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
