#pragma once

/// @file
/// `testing::WebhookClient`: the sending side of the Event Webhook as SendGrid runs it, for
/// FakeSendgridServer. Events handed to `post` are collected into batches (bounded by count,
/// bytes and a short wait), signed like SendGrid's (`WebhookSigner`), and POSTed from a thread
/// of its own; a non-2xx answer or a failed connection is retried with a doubling backoff until
/// `retry_for` passed. On request it misbehaves as the real one may: re-delivers a batch
/// (duplicates) and shuffles the events of a batch, so receivers are tested against both.
/// Link `sendgrid_backend::testing` (cpp-httplib, OpenSSL).

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/testing/webhook_signer.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// How a WebhookClient batches, retries and misbehaves.
struct WebhookClientOptions {
    std::string url;  ///< http://HOST:PORT/PATH (no TLS: the fake server's HTTP library has none)
    std::size_t max_batch_events = 1000;
    std::size_t max_batch_bytes = 768 * 1024;
    /// Events fired within this time of the first one waiting go out in one POST.
    std::chrono::milliseconds max_batch_wait{200};
    /// The first retry waits this long; each next one twice as long, up to max_retry_interval.
    std::chrono::milliseconds first_retry{200};
    std::chrono::milliseconds max_retry_interval{std::chrono::minutes(10)};
    /// A batch not accepted by then is given up; SendGrid keeps trying for 24 hours.
    std::chrono::milliseconds retry_for{std::chrono::hours(24)};
    /// Connecting, sending and waiting for the answer each take at most this long.
    std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
    /// stop() tries what is still waiting for at most this long, then drops it.
    std::chrono::milliseconds stop_budget{std::chrono::seconds(2)};
    /// The probability that an accepted batch is delivered once more (0 to 1).
    double duplicate_probability = 0;
    /// Post the events of each batch in a random order.
    bool shuffle = false;
    std::uint64_t seed = 0;  ///< of the duplicates and the shuffle; 0: a random one
};

/// What a WebhookClient did so far.
struct WebhookClientTotals {
    std::uint64_t posts = 0;              ///< requests sent, retries and duplicates included
    std::uint64_t accepted_posts = 0;     ///< of which answered 2xx
    std::uint64_t duplicate_posts = 0;    ///< batches sent again on purpose
    std::uint64_t abandoned_batches = 0;  ///< given up after retry_for, or at stop()
};

namespace detail {

/// An http URL split for httplib.
struct WebhookUrl {
    std::string host;
    int port = 80;
    std::string path = "/";
};

/// Splits `url`; empty with `why` set when it is not http://HOST[:PORT][/PATH].
inline std::optional<WebhookUrl> parse_webhook_url(std::string_view url, std::string& why) {
    constexpr std::string_view scheme = "http://";
    if (url.substr(0, scheme.size()) != scheme) {
        why = url.substr(0, 8) == "https://"
                  ? "https is not supported (the fake server's HTTP library is built without TLS)"
                  : "must start with http://, e.g. http://127.0.0.1:8080/events";
        return std::nullopt;
    }
    const std::string_view rest = url.substr(scheme.size());
    const std::size_t slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    WebhookUrl parsed;
    if (slash != std::string_view::npos) parsed.path = std::string(rest.substr(slash));
    const std::size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
        const std::string_view digits = authority.substr(colon + 1);
        int port = 0;
        for (const char c : digits) {
            if (c < '0' || c > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (c - '0');
        }
        if (digits.empty() || port <= 0 || port > 65535) {
            why = "the port must be a number 1-65535";
            return std::nullopt;
        }
        parsed.port = port;
    }
    if (parsed.host.empty()) {
        why = "has no host, e.g. http://127.0.0.1:8080/events";
        return std::nullopt;
    }
    return parsed;
}

}  // namespace detail

/// See the file comment. Every member is safe to call from any thread.
class WebhookClient {
  public:
    using Clock = std::chrono::steady_clock;

    /// @throws TestingSetupError naming the URL when it is not an http URL.
    WebhookClient(WebhookClientOptions options, std::shared_ptr<const WebhookSigner> signer)
        : options_(std::move(options)), signer_(std::move(signer)) {
        std::string why;
        const auto url = detail::parse_webhook_url(options_.url, why);
        if (!url) throw TestingSetupError("webhook URL " + options_.url + ": " + why);
        url_ = *url;
        random_.seed(options_.seed != 0 ? options_.seed : std::random_device{}());
        thread_ = std::thread([this] { run(); });
    }

    ~WebhookClient() { stop(); }

    WebhookClient(const WebhookClient&) = delete;
    WebhookClient& operator=(const WebhookClient&) = delete;

    /// Queues `event` for the next batch; never waits for the network.
    void post(nlohmann::json event) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            if (waiting_.empty()) first_waiting_since_ = Clock::now();
            waiting_.push_back(std::move(event));
        }
        wake_.notify_all();
    }

    /// Waits until nothing is queued, retried or on the wire, or `timeout` passed.
    bool wait_until_idle(std::chrono::milliseconds timeout) const {
        std::unique_lock<std::mutex> lock(mutex_);
        return idle_.wait_for(
            lock, timeout, [this] { return waiting_.empty() && outgoing_.empty() && !sending_; });
    }

    WebhookClientTotals totals() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return totals_;
    }

    /// Tries what is left within `stop_budget`, then cuts off a request still waiting for its
    /// answer and joins the thread (idempotent).
    void stop() {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (!stopping_) {
                stopping_ = true;
                stop_deadline_ = Clock::now() + options_.stop_budget;
            }
            wake_.notify_all();
            idle_.wait_until(lock, stop_deadline_, [this] { return finished_; });
            if (!finished_ && in_flight_ != nullptr) in_flight_->stop();
        }
        if (thread_.joinable()) thread_.join();
    }

  private:
    struct Outgoing {
        std::string body;
        Clock::time_point next_attempt;
        Clock::time_point give_up;
        int failures = 0;
        bool duplicate = false;  ///< a copy sent on purpose (never copied again)
    };

    /// Moves the waiting events into batches (under the lock).
    void cut_batches(Clock::time_point now) {
        while (!waiting_.empty()) {
            nlohmann::json batch = nlohmann::json::array();
            std::size_t bytes = 2;
            while (!waiting_.empty() && batch.size() < options_.max_batch_events) {
                const std::size_t size = waiting_.front().dump().size() + 1;
                if (!batch.empty() && bytes + size > options_.max_batch_bytes) break;
                bytes += size;
                batch.push_back(std::move(waiting_.front()));
                waiting_.pop_front();
            }
            if (options_.shuffle) std::shuffle(batch.begin(), batch.end(), random_);
            outgoing_.push_back({batch.dump(), now, now + options_.retry_for, 0, false});
        }
    }

    bool batch_is_ready(Clock::time_point now) const {
        return !waiting_.empty() && (stopping_ || waiting_.size() >= options_.max_batch_events ||
                                     now >= first_waiting_since_ + options_.max_batch_wait);
    }

    /// One POST; whether it was answered 2xx.
    bool send(const std::string& body, std::chrono::milliseconds timeout) {
        httplib::Client client(url_.host, url_.port);
        const auto seconds = static_cast<time_t>(timeout.count() / 1000);
        const auto micros = static_cast<time_t>((timeout.count() % 1000) * 1000);
        client.set_connection_timeout(seconds, micros);
        client.set_read_timeout(seconds, micros);
        client.set_write_timeout(seconds, micros);
        const auto timestamp = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        httplib::Headers headers{{"User-Agent", "SendGrid Event API"}};
        for (const auto& [name, value] : signer_->headers(body, timestamp)) {
            headers.emplace(name, value);
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            in_flight_ = &client;
        }
        const auto result = client.Post(url_.path.c_str(), headers, body, "application/json");
        {
            std::lock_guard<std::mutex> lock(mutex_);
            in_flight_ = nullptr;
        }
        return result && result->status >= 200 && result->status < 300;
    }

    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            const auto now = Clock::now();
            if (batch_is_ready(now)) cut_batches(now);
            if (stopping_ && now >= stop_deadline_) break;
            auto due = outgoing_.end();
            auto next_wake = Clock::time_point::max();
            for (auto it = outgoing_.begin(); it != outgoing_.end(); ++it) {
                if (stopping_ || it->next_attempt <= now) {
                    due = it;
                    break;
                }
                next_wake = std::min(next_wake, it->next_attempt);
            }
            if (due == outgoing_.end()) {
                if (stopping_ && waiting_.empty()) break;
                if (!waiting_.empty()) {
                    next_wake = std::min(next_wake, first_waiting_since_ + options_.max_batch_wait);
                }
                idle_.notify_all();
                if (next_wake == Clock::time_point::max()) {
                    wake_.wait(lock);
                } else {
                    wake_.wait_until(lock, next_wake);
                }
                continue;
            }
            Outgoing batch = std::move(*due);
            outgoing_.erase(due);
            sending_ = true;
            const auto timeout =
                stopping_ ? std::min(options_.request_timeout,
                                     std::chrono::duration_cast<std::chrono::milliseconds>(
                                         stop_deadline_ - now) +
                                         std::chrono::milliseconds(1))
                          : options_.request_timeout;
            lock.unlock();
            const bool accepted = send(batch.body, timeout);
            lock.lock();
            sending_ = false;
            ++totals_.posts;
            if (batch.duplicate) ++totals_.duplicate_posts;
            const auto after = Clock::now();
            if (accepted) {
                ++totals_.accepted_posts;
                std::uniform_real_distribution<double> coin(0.0, 1.0);
                if (!batch.duplicate && !stopping_ && options_.duplicate_probability > 0 &&
                    coin(random_) < options_.duplicate_probability) {
                    outgoing_.push_back(
                        {std::move(batch.body), after, after + options_.retry_for, 0, true});
                }
                continue;
            }
            ++batch.failures;
            auto backoff = options_.first_retry;
            for (int i = 1; i < batch.failures && backoff < options_.max_retry_interval; ++i) {
                backoff *= 2;
            }
            batch.next_attempt = after + std::min(backoff, options_.max_retry_interval);
            if (stopping_ || batch.next_attempt > batch.give_up) {
                ++totals_.abandoned_batches;
            } else {
                outgoing_.push_back(std::move(batch));
            }
        }
        totals_.abandoned_batches += outgoing_.size() + (waiting_.empty() ? 0 : 1);
        outgoing_.clear();
        waiting_.clear();
        finished_ = true;
        idle_.notify_all();
    }

    WebhookClientOptions options_;
    std::shared_ptr<const WebhookSigner> signer_;
    detail::WebhookUrl url_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    mutable std::condition_variable idle_;
    std::deque<nlohmann::json> waiting_;
    Clock::time_point first_waiting_since_;
    std::deque<Outgoing> outgoing_;
    bool sending_ = false;
    bool stopping_ = false;
    bool finished_ = false;                 ///< run() returned
    httplib::Client* in_flight_ = nullptr;  ///< the request on the wire, for stop()
    Clock::time_point stop_deadline_;
    WebhookClientTotals totals_;
    std::mt19937_64 random_;
    std::thread thread_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
