#pragma once

/// @file
/// `RedisRateLimit`: one token bucket in Redis for every sender of a SendGrid account, on any
/// number of hosts: each take is one Lua script run atomically on Redis' own clock (`TIME`), so
/// hosts whose clocks disagree still share one rate. A 429's wait, given to `pause`, holds back
/// every sender sharing the bucket. Give it to `BackendOptions::rate_limit` (a queue worker's
/// backend, a BackgroundSender's, any backend's). Link `sendgrid_backend::redis` (hiredis).
///
/// When Redis fails, sends are not held back: for `fail_open_for` after each failure permits
/// are granted without asking Redis (SendGrid's own limit still answers 429), and the first
/// failure is written on stderr.
///
/// @code
/// auto limit = std::make_shared<sendgrid_backend::RedisRateLimit>(
///     redis, sendgrid_backend::RedisRateLimitOptions{"myapp:sendgrid_rate", {50}});
/// sendgrid_backend::BackendOptions options;
/// options.rate_limit = limit;  // at most 50 requests a second among every holder of the key
/// @endcode

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/rate_limit.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/scripts.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where the shared bucket lives and how fast it fills. Every sender sharing a limit must use
/// the same `key` and the same rate.
struct RedisRateLimitOptions {
    /// The prefix of the two keys: `<key>:bucket` (a hash) and `<key>:paused_until`.
    std::string key = "sendgrid_backend:rate_limit";
    RateLimitOptions rate;
    /// After Redis failed, permits are granted without it for this long (1 ms to an hour).
    std::chrono::milliseconds fail_open_for{1'000};

    static constexpr std::chrono::milliseconds max_fail_open_for = std::chrono::hours(1);

    std::string bucket_key() const { return key + ":bucket"; }
    std::string paused_key() const { return key + ":paused_until"; }

    /// @throws ImproperlyConfigured naming the option out of range.
    void validate() const {
        if (key.empty()) {
            detail::refuse_setting("RedisRateLimitOptions::key",
                                   "is empty; name the bucket every sender shares");
        }
        rate.validate("RedisRateLimitOptions::rate");
        detail::require_within("RedisRateLimitOptions::fail_open_for", fail_open_for,
                               std::chrono::milliseconds(1), max_fail_open_for);
    }
};

namespace detail {

/// One take from the bucket, on Redis' clock. KEYS[1]: the bucket (a hash: tokens, at in µs),
/// KEYS[2]: paused until (µs). ARGV: permits a second, the burst, how many are wanted. Returns
/// {granted, ms until the next may be (0 when all were granted)}. Run twice (a round sent again
/// after NOSCRIPT), it takes twice: the limit is only under-used.
inline constexpr const char* rate_take_script = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local paused = tonumber(redis.call('GET', KEYS[2])) or 0
if paused > now then return {0, math.ceil((paused - now) / 1000)} end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000000)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at',
           string.format('%.0f', now))
-- Once full again the bucket may as well be gone (it reads as full when missing).
redis.call('PEXPIRE', KEYS[1], math.min(86400000, math.ceil((burst - tokens) * 1000 / rate) + 1000))
local wait = 0
if granted < wanted then wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate)) end
return {granted, wait}
)lua";

/// A pause for everyone sharing the bucket. KEYS[1]: paused until (µs). ARGV: the wait in ms.
/// A longer pause in effect is kept. Returns 1 when it moved the end of the pause.
inline constexpr const char* rate_pause_script = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local wait = tonumber(ARGV[1])
local ends = now + wait * 1000
local paused = tonumber(redis.call('GET', KEYS[1])) or 0
if ends <= paused then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', ends), 'PX', math.max(1, wait))
return 1
)lua";

}  // namespace detail

/// A token bucket in Redis shared by every sender given the same key. See the file comment.
class RedisRateLimit final : public RateLimit {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    RedisRateLimit(std::shared_ptr<RedisClient> redis, RedisRateLimitOptions options,
                   Clock& clock = system_clock())
        : redis_(std::move(redis)), options_(std::move(options)), clock_(clock) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        options_.validate();
        rate_text_ = number_text(options_.rate.per_second);
        burst_text_ = std::to_string(options_.rate.effective_burst());
    }

    RatePermits take(std::size_t wanted) override {
        if (wanted == 0) return {};
        if (failing_open()) return {wanted, std::chrono::milliseconds(0)};
        try {
            const std::vector<std::vector<std::string>> call{{"2", options_.bucket_key(),
                                                              options_.paused_key(), rate_text_,
                                                              burst_text_, std::to_string(wanted)}};
            const RedisValue answer =
                detail::stored_script<&detail::rate_take_script>().run(*redis_, call).at(0);
            if (answer.is_error() || answer.elements.size() != 2) {
                throw RedisError("the rate limit script answered " +
                                 (answer.is_error() ? answer.text : std::string("no pair")));
            }
            RatePermits permits;
            permits.granted = static_cast<std::size_t>(std::clamp<std::int64_t>(
                answer.elements[0].integer, 0, static_cast<std::int64_t>(wanted)));
            if (permits.granted < wanted) {
                permits.retry_in = std::chrono::milliseconds(
                    std::clamp<std::int64_t>(answer.elements[1].integer, 1, 86'400'000));
            }
            return permits;
        } catch (const RedisError& error) {
            fail_open(error);
            return {wanted, std::chrono::milliseconds(0)};
        }
    }

    void pause(std::chrono::milliseconds wait) override {
        if (wait.count() <= 0) return;
        wait = std::min(wait, std::chrono::milliseconds(86'400'000));  // as LocalRateLimit
        try {
            const std::vector<std::vector<std::string>> call{
                {"1", options_.paused_key(), std::to_string(wait.count())}};
            const RedisValue answer =
                detail::stored_script<&detail::rate_pause_script>().run(*redis_, call).at(0);
            if (answer.is_error()) throw RedisError("the pause script answered " + answer.text);
        } catch (const RedisError& error) {
            fail_open(error);  // this sender still waits its own 429's wait
        }
    }

    /// How many times Redis failed a take or a pause (each time, sends went on without it).
    std::uint64_t redis_failures() const noexcept { return failures_.load(); }
    const RedisRateLimitOptions& options() const noexcept { return options_; }

  private:
    static std::string number_text(double value) {
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", value);
        return text;
    }

    bool failing_open() {
        std::lock_guard<std::mutex> lock(mutex_);
        return failed_ && clock_.now() < open_until_;
    }

    void fail_open(const RedisError& error) {
        if (failures_.fetch_add(1) == 0) {
            std::fprintf(stderr,
                         "[sendgrid_backend] RedisRateLimit %s: Redis failed (%s); sending "
                         "without the shared limit until it answers again\n",
                         options_.key.c_str(), error.what());
        }
        std::lock_guard<std::mutex> lock(mutex_);
        failed_ = true;
        open_until_ = clock_.now() + options_.fail_open_for;
    }

    std::shared_ptr<RedisClient> redis_;
    RedisRateLimitOptions options_;
    Clock& clock_;
    std::string rate_text_;
    std::string burst_text_;
    std::mutex mutex_;
    bool failed_ = false;
    Clock::time_point open_until_{};
    std::atomic<std::uint64_t> failures_{0};
};

SENDGRID_BACKEND_NAMESPACE_END
