#pragma once

/// @file
/// `RateLimit`: how fast requests may go to SendGrid, for everyone who holds the same limit.
/// Delivery takes a permit before every try (`BackendOptions::rate_limit`), and when SendGrid
/// answers 429 with a wait it pauses the limit, so that every sender sharing it stops, not only
/// the one that was told. `LocalRateLimit` is a token bucket in this process;
/// `RedisRateLimit` (redis/rate_limit.hpp) is one bucket shared by every process and host.
///
/// A request that waited the longest wait between tries (`RetryPolicy::max_backoff` or
/// `max_retry_after`, whichever is longer) for its permit goes without one: a send's longest
/// time stays bounded (a queue worker's visibility timeout relies on it), and
/// SendGrid's own limit still answers 429 when a fleet outgrows its share.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <mutex>
#include <string>

#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// What a `RateLimit::take` gave.
struct RatePermits {
    std::size_t granted = 0;
    /// When fewer were granted than asked: how long until the next one may be (at least 1 ms).
    std::chrono::milliseconds retry_in{0};
};

/// A limit on requests per second shared by whoever holds it. Implementations are thread-safe
/// and never wait for permits themselves (the caller waits `retry_in`); one shared through a
/// store may take a round trip to it.
class RateLimit {
  public:
    virtual ~RateLimit() = default;
    /// Takes up to `wanted` permits (one per request), as many as the limit has now.
    virtual RatePermits take(std::size_t wanted) = 0;
    /// SendGrid answered 429 asking for `wait`: no permit is given before it is over (a longer
    /// pause in effect is kept).
    virtual void pause(std::chrono::milliseconds wait) = 0;
};

/// A token bucket's settings: `per_second` permits a second on average, up to `burst` at once.
struct RateLimitOptions {
    double per_second = 0;
    /// 0: a tenth of a second's worth, at least 1.
    std::size_t burst = 0;

    static constexpr double min_per_second = 0.001;
    static constexpr double max_per_second = 1'000'000;
    static constexpr std::size_t max_burst = 1'000'000;

    /// The burst in effect.
    std::size_t effective_burst() const noexcept {
        if (burst != 0) return burst;
        return std::max<std::size_t>(1, static_cast<std::size_t>(per_second / 10));
    }

    /// @throws ImproperlyConfigured naming `<owner>::per_second` or `<owner>::burst`.
    void validate(const std::string& owner) const {
        // Written so that NaN fails too.
        if (!(per_second >= min_per_second && per_second <= max_per_second)) {
            detail::refuse_setting(
                (owner + "::per_second").c_str(),
                "is " + std::to_string(per_second) + "; it must be from 0.001 to 1000000");
        }
        detail::require_at_most((owner + "::burst").c_str(), burst, max_burst);
    }
};

namespace detail {

/// A token bucket's arithmetic, the same in this process and in Redis' script: `tokens` after
/// `elapsed_seconds` more at `per_second`, never above `burst`.
inline double refilled(double tokens, double elapsed_seconds, double per_second,
                       double burst) noexcept {
    return std::min(burst, tokens + std::max(0.0, elapsed_seconds) * per_second);
}

/// How long until a bucket holding `tokens` (< 1) has a whole one: at least 1 ms.
inline std::chrono::milliseconds until_next_token(double tokens, double per_second) noexcept {
    const double ms = std::ceil((1.0 - tokens) * 1000.0 / per_second);
    return std::chrono::milliseconds(static_cast<long long>(std::clamp(ms, 1.0, 86'400'000.0)));
}

}  // namespace detail

/// A token bucket for the senders of one process (threads, backends, BackgroundSenders that
/// share it). Time comes from a `Clock`, so tests need not wait.
class LocalRateLimit final : public RateLimit {
  public:
    /// @throws ImproperlyConfigured naming the option out of range.
    explicit LocalRateLimit(RateLimitOptions options, Clock& clock = system_clock())
        : options_(options), clock_(clock) {
        options_.validate("RateLimitOptions");
        burst_ = static_cast<double>(options_.effective_burst());
        tokens_ = burst_;
        last_ = clock_.now();
        paused_until_ = last_;
    }

    RatePermits take(std::size_t wanted) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const Clock::time_point now = clock_.now();
        if (now < paused_until_) {
            return {0, std::chrono::ceil<std::chrono::milliseconds>(paused_until_ - now)};
        }
        const std::chrono::duration<double> elapsed = now - last_;
        tokens_ = detail::refilled(tokens_, elapsed.count(), options_.per_second, burst_);
        last_ = now;
        const auto whole = static_cast<std::size_t>(tokens_);
        RatePermits permits;
        permits.granted = std::min(wanted, whole);
        tokens_ -= static_cast<double>(permits.granted);
        if (permits.granted < wanted) {
            permits.retry_in = detail::until_next_token(tokens_, options_.per_second);
        }
        return permits;
    }

    void pause(std::chrono::milliseconds wait) override {
        // A day at most: SendGrid's waits are capped there too, and the sum cannot overflow.
        wait =
            std::clamp(wait, std::chrono::milliseconds(0), std::chrono::milliseconds(86'400'000));
        std::lock_guard<std::mutex> lock(mutex_);
        paused_until_ = std::max(paused_until_, clock_.now() + wait);
    }

    const RateLimitOptions& options() const noexcept { return options_; }

  private:
    RateLimitOptions options_;
    Clock& clock_;
    std::mutex mutex_;
    double burst_ = 1;
    double tokens_ = 1;
    Clock::time_point last_;
    Clock::time_point paused_until_;
};

SENDGRID_BACKEND_NAMESPACE_END
