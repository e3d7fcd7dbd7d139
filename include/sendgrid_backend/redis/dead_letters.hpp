#pragma once

/// @file
/// The Redis queue's dead letters: `RedisDeadLetters` lists, shows, re-queues and drops the
/// messages that ended `failed` (SendGrid refused them: 400, 401, 403, 413, or the tries ran
/// out; or their queue entry could not be read) or `unknown` (a worker stopped while it may
/// have been sending them), by queue key, as Symfony Messenger's failure transport keeps them.
/// The `sendgrid-worker dead` commands use it. Link `sendgrid_backend::redis` (hiredis).
///
/// A worker records a dead letter in the same atomic step that moves the status to `failed` or
/// `unknown` (RedisQueueOptions::dead_letters, on by default), so a message is kept once or not
/// at all, whatever a worker's death or a lost answer interrupts. The store is bounded by age:
/// a dead letter older than RedisQueueOptions::dead_letter_ttl (30 days) is removed as later
/// ones are recorded, and the whole store expires when none was recorded for that long. The
/// scripts and the layout are in redis/dead_letter_scripts.hpp.
///
/// @code
/// sendgrid_backend::RedisDeadLetters dead(redis, queue_options);
/// for (const auto& letter : dead.list(20)) std::cout << letter.key << ": " << letter.reason;
/// if (dead.retry("order-42-confirmation").requeued()) { /* a worker sends it again */ }
/// @endcode

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/text/random_key.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/dead_letter_scripts.hpp"
#include "sendgrid_backend/redis/queue.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// A message kept after it ended `failed` or `unknown`.
struct DeadLetter {
    std::string key;  ///< its queue key
    QueuedState state = QueuedState::failed;
    std::string reason;   ///< why it failed, or why its outcome is unknown
    int http_status = 0;  ///< SendGrid's answer; 0: none
    std::string worker;   ///< the consumer that recorded it
    std::int64_t at = 0;  ///< when it was recorded, in unix seconds (the worker's clock)
    std::string id;       ///< its entry in the dead-letter stream
    /// The message as queued: serialize_message's JSON (deserialize_message reads it), or what
    /// the queue entry held when it could not be read; empty when the entry was gone.
    std::string message;
};

/// Whether retry() may re-queue a message whose outcome is `unknown`.
enum class RetryUnknown {
    refuse,           ///< no: SendGrid may have accepted it
    allow_duplicate,  ///< yes, although its recipients may then get it twice
};

/// What retry() did.
struct DeadLetterRetry {
    enum class Outcome {
        requeued,         ///< queued again under its key; a worker sends it
        not_found,        ///< no dead letter under the key (never, dropped, retried, or aged out)
        refused_unknown,  ///< its outcome is unknown and RetryUnknown::refuse was given
        refused_state,    ///< its status is no longer failed or unknown: queued again since
        queue_full,       ///< RedisQueueOptions::max_length entries are waiting
        no_message,       ///< its queue entry was gone when it was recorded: nothing to send
    };
    Outcome outcome = Outcome::not_found;
    std::string explanation;  ///< a sentence for a person, naming the key

    bool requeued() const noexcept { return outcome == Outcome::requeued; }
};

/// The dead letters of one queue (the names in RedisQueueOptions, as its producers and workers
/// have them). Thread-safe as its RedisClient. Every call is one atomic step in Redis, run again
/// when the connection breaks on the way.
class RedisDeadLetters {
  public:
    static constexpr std::size_t max_list = 10'000;

    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisDeadLetters(std::shared_ptr<RedisClient> redis, RedisQueueOptions queue = {})
        : redis_(std::move(redis)), queue_(std::move(queue)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        queue_.validate();
    }

    /// How many dead letters are kept.
    std::size_t size() const {
        const RedisValue length = detail::retry_idempotent([&] {
            return redis_->command({"XLEN", queue_.dead_letter_key()});
        });
        if (length.is_error()) throw RedisError("XLEN failed: " + length.text);
        return static_cast<std::size_t>(length.integer);
    }

    /// The newest `count` dead letters, newest first.
    /// @throws ImproperlyConfigured when `count` is not 1 to `max_list`.
    std::vector<DeadLetter> list(std::size_t count = 100) const {
        detail::require_within("RedisDeadLetters::list count", static_cast<long long>(count), 1,
                               static_cast<long long>(max_list));
        const RedisValue entries = detail::retry_idempotent([&] {
            return redis_->command(
                {"XREVRANGE", queue_.dead_letter_key(), "+", "-", "COUNT", std::to_string(count)});
        });
        if (entries.is_error()) throw RedisError("XREVRANGE failed: " + entries.text);
        std::vector<DeadLetter> letters;
        for (const RedisValue& entry : entries.elements) {
            if (auto letter = letter_of(entry)) letters.push_back(std::move(*letter));
        }
        return letters;
    }

    /// The dead letter kept under `key`; nullopt when there is none.
    std::optional<DeadLetter> show(const std::string& key) const {
        const RedisValue id = detail::retry_idempotent([&] {
            return redis_->command({"HGET", queue_.dead_letter_index_key(), key});
        });
        if (id.is_error()) throw RedisError("HGET failed: " + id.text);
        if (id.is_nil()) return std::nullopt;
        const RedisValue entries = detail::retry_idempotent([&] {
            return redis_->command({"XRANGE", queue_.dead_letter_key(), id.text, id.text});
        });
        if (entries.is_error()) throw RedisError("XRANGE failed: " + entries.text);
        // An index field whose entry aged out or expired reads as gone.
        if (entries.elements.empty()) return std::nullopt;
        return letter_of(entries.elements[0]);
    }

    /// Queues the dead letter under `key` again, under the same key, and removes it from the
    /// dead letters, in one step: its status reads `queued` again (with `retried_at` and
    /// `retries`), and a worker sends it. Refused (nothing changes) for one whose outcome is
    /// `unknown` unless `unknown` is RetryUnknown::allow_duplicate, for one whose status has
    /// moved on since (queued again), and while the queue is full. A call whose answer was lost
    /// is run again and re-queues nothing twice.
    DeadLetterRetry retry(const std::string& key, RetryUnknown unknown = RetryUnknown::refuse) {
        const std::vector<std::vector<std::string>> call{
            {"6", queue_.dead_letter_key(), queue_.dead_letter_index_key(),
             queue_.status_prefix + key, queue_.stream, queue_.state_counts_key(),
             queue_.scheduled_key(), key, unknown == RetryUnknown::allow_duplicate ? "1" : "0",
             detail::random_key(), detail::unix_now_text(),
             std::to_string(queue_.status_ttl.count()), std::to_string(queue_.max_length),
             queue_.group}};
        const RedisValue answer = detail::retry_idempotent([&] {
            return detail::stored_script<&detail::dead_letter_retry_script>()
                .run(*redis_, call)
                .at(0);
        });
        if (answer.is_error() || answer.elements.size() != 2) {
            throw RedisError("Redis did not retry the dead letter: " + answer.text);
        }
        return retry_result(key, answer.elements[0].integer, answer.elements[1].text);
    }

    /// Removes the dead letter under `key`; its status stays as it is. Returns whether there was
    /// one (false also when an earlier try of this call, whose answer was lost, removed it).
    bool drop(const std::string& key) {
        const std::vector<std::vector<std::string>> call{
            {"2", queue_.dead_letter_key(), queue_.dead_letter_index_key(), key}};
        const RedisValue answer = detail::retry_idempotent([&] {
            return detail::stored_script<&detail::dead_letter_drop_script>()
                .run(*redis_, call)
                .at(0);
        });
        if (answer.is_error())
            throw RedisError("Redis did not drop the dead letter: " + answer.text);
        return answer.integer == 1;
    }

    const RedisQueueOptions& options() const noexcept { return queue_; }

  private:
    static std::optional<DeadLetter> letter_of(const RedisValue& entry) {
        if (entry.elements.size() != 2) return std::nullopt;
        DeadLetter letter;
        letter.id = entry.elements[0].text;
        const auto& fields = entry.elements[1].elements;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            const std::string& name = fields[i].text;
            const std::string& value = fields[i + 1].text;
            if (name == "key") {
                letter.key = value;
            } else if (name == "state") {
                letter.state = detail::stored_state(fields[i + 1]);
            } else if (name == "reason") {
                letter.reason = value;
            } else if (name == "http_status") {
                letter.http_status = static_cast<int>(detail::parse_decimal(value, 3).value_or(0));
            } else if (name == "worker") {
                letter.worker = value;
            } else if (name == "at") {
                letter.at = detail::parse_decimal(value, 18).value_or(0);
            } else if (name == "message") {
                letter.message = value;
            }
        }
        return letter;
    }

    static DeadLetterRetry retry_result(const std::string& key, long long code,
                                        const std::string& text) {
        using Outcome = DeadLetterRetry::Outcome;
        const std::string quoted = detail::quote_for_error(key);
        switch (code) {
            case 1:
                return {Outcome::requeued, quoted + " is queued again"};
            case -1:
                return {Outcome::refused_unknown,
                        quoted +
                            " ended unknown: SendGrid may have accepted it (a worker stopped "
                            "while it may have been sending it), so sending it again may deliver "
                            "it twice; not re-queued (RetryUnknown::allow_duplicate accepts that)"};
            case -2:
                return {Outcome::refused_state, quoted + " was queued again since (its status is " +
                                                    detail::quote_for_error(text) +
                                                    "); not re-queued"};
            case -3:
                return {Outcome::queue_full, "the queue is full (RedisQueueOptions::max_length); " +
                                                 quoted + " was not re-queued"};
            case -4:
                return {Outcome::no_message, quoted +
                                                 " has no message to send (its queue entry was "
                                                 "gone when it was recorded); not re-queued"};
            default:
                return {Outcome::not_found, "no dead letter under " + quoted};
        }
    }

    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions queue_;
};

SENDGRID_BACKEND_NAMESPACE_END
