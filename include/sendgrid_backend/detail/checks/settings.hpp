#pragma once

/// @file
/// Range checks for settings and options: each refusal is an ImproperlyConfigured naming the
/// setting, its value and the range, so that no value reaches arithmetic that could overflow.

#include <chrono>
#include <cstddef>
#include <ratio>
#include <string>
#include <type_traits>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

[[noreturn]] inline void refuse_setting(const char* name, const std::string& reason) {
    throw ImproperlyConfigured(name, reason);
}

inline void require_positive(const char* name, std::chrono::milliseconds value) {
    if (value.count() <= 0) {
        refuse_setting(name, "is " + std::to_string(value.count()) +
                                 " ms; it must be more than 0 (libcurl would read 0 as no limit)");
    }
}

/// A duration for an error in the largest whole unit: "2 hours", "30 s", "1500 ms".
inline std::string describe_duration(std::chrono::milliseconds value) {
    constexpr long long hour = 3'600'000;
    constexpr long long second = 1'000;
    const long long ms = value.count();
    if (ms >= hour && ms % hour == 0) {
        return std::to_string(ms / hour) + (ms == hour ? " hour" : " hours");
    }
    if (ms >= second && ms % second == 0) return std::to_string(ms / second) + " s";
    return std::to_string(ms) + " ms";
}

/// Refuses a duration above `limit`.
inline void require_at_most(const char* name, std::chrono::milliseconds value,
                            std::chrono::milliseconds limit) {
    if (value > limit) {
        refuse_setting(name, "is " + std::to_string(value.count()) + " ms; it must be at most " +
                                 describe_duration(limit));
    }
}

/// The unit a duration's count is in, for an error.
template <class Period>
constexpr const char* duration_unit() noexcept {
    if constexpr (std::is_same_v<Period, std::milli>) return " ms";
    if constexpr (std::is_same_v<Period, std::ratio<1>>) return " s";
    return " (ticks)";
}

/// Refuses a duration outside [low, high], compared in its own unit (converting a huge value
/// first could overflow); `why` (e.g. " (Redis reads 0 as forever)") says why the range is
/// what it is, when that is not plain.
template <class Rep, class Period>
void require_within(const char* name, std::chrono::duration<Rep, Period> value,
                    std::chrono::duration<Rep, Period> low, std::chrono::duration<Rep, Period> high,
                    const char* why = "") {
    if (value < low || value > high) {
        refuse_setting(
            name,
            "is " + std::to_string(value.count()) + duration_unit<Period>() + "; it must be from " +
                describe_duration(std::chrono::duration_cast<std::chrono::milliseconds>(low)) +
                " to " +
                describe_duration(std::chrono::duration_cast<std::chrono::milliseconds>(high)) +
                why);
    }
}

/// Refuses a count above `limit`.
inline void require_at_most(const char* name, std::size_t value, std::size_t limit) {
    if (value > limit) {
        refuse_setting(
            name, "is " + std::to_string(value) + "; it must be at most " + std::to_string(limit));
    }
}

/// Refuses a number outside [low, high].
inline void require_within(const char* name, long long value, long long low, long long high) {
    if (value < low || value > high) {
        refuse_setting(name, "is " + std::to_string(value) + "; it must be from " +
                                 std::to_string(low) + " to " + std::to_string(high));
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
