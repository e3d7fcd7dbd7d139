#pragma once

/// @file
/// `RedisScheduleMover`: moves the durable queue's scheduled messages (RedisMailQueue::enqueue
/// with a `not_before`) to its stream once Redis' clock reaches their time; workers then send
/// them as any queued message. Every RedisMailWorker runs one at the start of each round
/// (WorkerOptions::move_scheduled), so a deployment with workers needs nothing more; `run` one
/// alone to move without sending. Any number may run: each message is moved once (the scripts
/// are in redis/scripts.hpp). Link `sendgrid_backend::redis` (hiredis).
///
/// How late a message goes out: never before its time, by Redis' clock (its `TIME`; the hosts'
/// clocks do not matter). A worker waiting for new entries waits no longer than until the next
/// scheduled message is due, so an idle worker moves it within a round trip, and a worker that
/// is sending moves it when its round ends (a round lasts as long as its sends). A message
/// scheduled while every worker already waits is moved when the first wait ends: at most
/// WorkerOptions::block (1 s by default) late; a mover running alone, at most its `idle`.
/// While Redis is down or the stream is full (RedisQueueOptions::max_length), due messages wait.
///
/// @code
/// sendgrid_backend::RedisScheduleMover mover(redis, queue_options);  // without a worker
/// mover.run(stop_flag);
/// @endcode

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/queue.hpp"
#include "sendgrid_backend/redis/scripts.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// How a mover moves.
struct ScheduleMoverOptions {
    /// Keys moved per call of move_due, 1 to `max_batch`; the rest on the next call.
    std::size_t batch = 1'000;
    /// How long `run` waits between calls when no message is due sooner: 1 ms to `max_idle`.
    /// A message scheduled during a wait is moved up to this late.
    std::chrono::milliseconds idle{1'000};

    static constexpr std::size_t max_batch = 10'000;
    static constexpr std::chrono::milliseconds max_idle = std::chrono::hours(1);
};

/// What one move_due call did.
struct ScheduledMoves {
    std::size_t moved = 0;  ///< messages it moved to the stream
    /// Due messages left scheduled because the stream was full (RedisQueueOptions::max_length).
    std::size_t held_back = 0;
    /// How long until the next message is due, by Redis' clock (0 when more are due than one
    /// call moves); none when no other message is scheduled.
    std::optional<std::chrono::milliseconds> next_due_in;
};

/// See the file comment. Thread-safe as its RedisClient.
class RedisScheduleMover {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisScheduleMover(std::shared_ptr<RedisClient> redis, RedisQueueOptions queue = {},
                                ScheduleMoverOptions options = {})
        : redis_(std::move(redis)), queue_(std::move(queue)), options_(options) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        queue_.validate();
        detail::require_within("ScheduleMoverOptions::batch",
                               static_cast<long long>(options_.batch), 1LL,
                               static_cast<long long>(ScheduleMoverOptions::max_batch));
        detail::require_within("ScheduleMoverOptions::idle", options_.idle,
                               std::chrono::milliseconds(1), ScheduleMoverOptions::max_idle);
    }

    /// Moves up to `batch` due messages to the stream, earliest first, in two round trips (one
    /// when none is due). Safe to run again after a lost answer, and beside other movers.
    /// @throws RedisError when Redis stays out of reach or refuses a script.
    ScheduledMoves move_due() {
        const std::vector<std::vector<std::string>> find{
            {"1", queue_.scheduled_key(), std::to_string(options_.batch)}};
        const RedisValue due = detail::retry_idempotent(
            [&] { return detail::stored_script<&detail::due_script>().run(*redis_, find).at(0); });
        if (due.is_error() || due.elements.size() != 2) {
            throw RedisError("reading the scheduled messages failed: " + due.text);
        }
        ScheduledMoves moves;
        if (due.elements[0].integer >= 0) {
            moves.next_due_in = std::chrono::milliseconds(due.elements[0].integer);
        }
        const std::vector<RedisValue>& keys = due.elements[1].elements;
        if (keys.empty()) return moves;
        std::vector<std::vector<std::string>> calls;
        calls.reserve(keys.size());
        const std::string now = detail::unix_now_text();
        const std::string ttl = std::to_string(queue_.status_ttl.count());
        const std::string max_length = std::to_string(queue_.max_length);
        for (const RedisValue& key : keys) {
            calls.push_back({"5", queue_.scheduled_key(), queue_.scheduled_messages_key(),
                             queue_.stream, queue_.status_prefix + key.text,
                             queue_.state_counts_key(), key.text, now, ttl, max_length});
        }
        const auto answers = detail::retry_idempotent(
            [&] { return detail::stored_script<&detail::move_due_script>().run(*redis_, calls); });
        for (const RedisValue& answer : answers) {
            if (answer.is_error()) throw RedisError("moving a due message failed: " + answer.text);
            if (answer.integer == 1) ++moves.moved;
            if (answer.integer < 0) ++moves.held_back;
        }
        // A full batch: more may be due already.
        if (keys.size() == options_.batch) moves.next_due_in = std::chrono::milliseconds(0);
        return moves;
    }

    /// Moves due messages until `stop` is set, waiting between calls until the next one is due
    /// (at most `idle`; `idle` also while Redis is out of reach or the stream is full).
    void run(const std::atomic<bool>& stop) {
        while (!stop.load()) {
            std::chrono::milliseconds wait = options_.idle;
            try {
                const ScheduledMoves moves = move_due();
                if (moves.next_due_in && moves.held_back == 0) {
                    wait = std::min(wait, *moves.next_due_in);
                }
            } catch (const RedisError&) {
                // Out of reach: the client reconnects with backoff on the next call.
            }
            sleep_unless_stopped(wait, stop);
        }
    }

    const ScheduleMoverOptions& options() const noexcept { return options_; }

  private:
    static void sleep_unless_stopped(std::chrono::milliseconds wait,
                                     const std::atomic<bool>& stop) {
        const auto until = std::chrono::steady_clock::now() + wait;
        while (!stop.load() && std::chrono::steady_clock::now() < until) {
            const auto left = until - std::chrono::steady_clock::now();
            std::this_thread::sleep_for(
                std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)));
        }
    }

    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions queue_;
    ScheduleMoverOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END

// The worker runs a mover each round: included after the mover (see the end of queue.hpp).
#include "sendgrid_backend/redis/worker.hpp"
