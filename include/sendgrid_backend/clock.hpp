#pragma once

/// @file
/// `Clock`: time as delivery sees it (steady time, Unix time, sleeping), so that retry
/// schedules are tested with a fake one instead of sockets and sleeps; `SystemClock` is the real
/// one.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <thread>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Time as delivery sees it; inject a fake one to test retry schedules without waiting.
class Clock {
  public:
    using time_point = std::chrono::steady_clock::time_point;
    virtual ~Clock() = default;
    virtual time_point now() = 0;
    /// Seconds since the Unix epoch (SendGrid's X-RateLimit-Reset is given in those).
    virtual std::int64_t unix_now() = 0;
    virtual void sleep_until(time_point when) = 0;
};

/// The real clock: steady_clock, time(), and the calling thread sleeps.
class SystemClock final : public Clock {
  public:
    time_point now() override { return std::chrono::steady_clock::now(); }
    std::int64_t unix_now() override { return static_cast<std::int64_t>(std::time(nullptr)); }
    void sleep_until(time_point when) override { std::this_thread::sleep_until(when); }
};

/// The process's SystemClock (it holds no state).
inline SystemClock& system_clock() noexcept {
    static SystemClock clock;
    return clock;
}

SENDGRID_BACKEND_NAMESPACE_END
