#pragma once

/// @file
/// A durable mail queue on Redis Streams, the producer's side: `enqueue` a message (the whole
/// EmailMessage, attachments included, as one stream entry) from any process on any host, and
/// read back its status by its key. Workers (`RedisMailWorker`, redis/worker.hpp, which this
/// header includes) send what is queued. Link `sendgrid_backend::redis` (hiredis).
///
/// The protocol both sides follow. At most once on the wire, across processes. A worker records
/// "sending" (durably, and only if the message was still "queued") before it POSTs; a worker
/// that dies leaves its entries pending, and another claims them after `visibility_timeout`
/// (XAUTOCLAIM): those still "queued" it sends, those "sending" it reports `unknown` (SendGrid
/// may have accepted them) without sending them again, unless `WorkerOptions::resend_unknown`
/// says otherwise. Nothing acknowledged to a producer is lost, and nothing is queued twice: its
/// XADD and status go in together in one script that first checks the key is new, so a producer
/// whose connection broke mid-enqueue just runs it again; the stream is never trimmed
/// (`max_length` refuses new entries instead). The scripts are in redis/scripts.hpp. A message
/// that ends `failed` or `unknown` is kept as a dead letter in the same step (`dead_letters`;
/// redis/dead_letters.hpp), to be retried or dropped by key.
///
/// Sending later (longer than SendGrid's 72 hours of `send_at`): `enqueue(message, not_before)`
/// keeps the message in a sorted set next to the stream (`RedisQueueOptions::scheduled_key`),
/// status "scheduled", until Redis' own clock reaches `not_before`; then a mover
/// (`RedisScheduleMover`, redis/schedule.hpp, which every worker runs each round) moves it to the
/// stream, status "queued", in one script that takes it out of the set, so two movers, or one
/// run again after a lost answer, move it once. `cancel(key)` takes it out of the set first.
/// Workers must be upgraded before producers schedule: a worker older than the states
/// "scheduled" and "cancelled" does not move due messages (and reads those states as unknown).
///
/// @code
/// auto redis = std::make_shared<sendgrid_backend::RedisClient>(
///     sendgrid_backend::RedisOptions::from_url("redis://127.0.0.1:6379"));
/// sendgrid_backend::RedisMailQueue queue(redis);
/// const std::string key = queue.enqueue(message);       // on the web server
/// queue.enqueue(reminder, std::chrono::system_clock::now() + std::chrono::hours(24 * 30));
/// // a worker process: RedisMailWorker(backend_shared_ptr, redis).run(stop_flag);
/// auto status = queue.status(key);                      // anywhere, any time
/// @endcode

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/status/tracking_key.hpp"
#include "sendgrid_backend/detail/text/random_key.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_json.hpp"
#include "sendgrid_backend/payload.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/scripts.hpp"
#include "sendgrid_backend/status/tracker.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where the queue lives in Redis. Producers and workers must agree on it.
struct RedisQueueOptions {
    std::string stream = "sendgrid_backend:mail";
    std::string group = "sendgrid_backend:workers";
    std::string status_prefix = "sendgrid_backend:mail:status:";
    /// A message's status is kept this long after its last change: 1 second to
    /// `max_status_ttl` (two years), and longer than a worker's visibility timeout (the worker
    /// refuses it otherwise: a "sending" status must outlive the wait before its entry is
    /// claimed).
    std::chrono::seconds status_ttl = std::chrono::hours(24 * 7);
    /// 0: unbounded. Otherwise enqueue refuses (QueueFull) while the stream holds this many
    /// entries; the stream is never trimmed, which could drop entries not yet sent.
    std::size_t max_length = 0;
    /// Where each message's status is also recorded (queued by `enqueue`, sending by a worker);
    /// null: only the queue's own status hash. Give the worker's backend the same tracker
    /// (`BackendOptions::statuses`), and the statuses read as one record, from queued to
    /// delivered, under the queue key.
    std::shared_ptr<StatusTracker> statuses;
    /// Workers keep each message that ends `failed` or `unknown` as a dead letter (its entry as
    /// queued, its key, state and reason), in the same step as that status change; see
    /// redis/dead_letters.hpp (RedisDeadLetters, `sendgrid-worker dead`). Off: none are kept.
    bool dead_letters = true;
    /// A dead letter older than this is removed when a later one is recorded (at most 1000 per
    /// recording), and the store expires whole when none was recorded for this long:
    /// 1 second to `max_dead_letter_ttl` (a year).
    std::chrono::seconds dead_letter_ttl = std::chrono::hours(24 * 30);

    /// Longer than the longest visibility timeout a worker allows (a year).
    static constexpr std::chrono::seconds max_status_ttl{2 * 366 * 24 * 3600};
    static constexpr std::chrono::seconds max_dead_letter_ttl{366 * 24 * 3600};

    /// The hash that counts, per state, the messages that ever entered it (the scripts add to
    /// it as they move a status; `RedisQueueMetrics` reads it): `<stream>:state_counts`. It
    /// never expires, unlike the statuses, so the counts only grow.
    std::string state_counts_key() const { return stream + ":state_counts"; }

    /// The dead letters' stream, `<stream>:dead` (redis/dead_letters.hpp).
    std::string dead_letter_key() const { return stream + ":dead"; }
    /// The hash from a dead letter's queue key to its entry in dead_letter_key():
    /// `<stream>:dead:index`.
    std::string dead_letter_index_key() const { return stream + ":dead:index"; }
    /// The sorted set of the keys of scheduled messages, scored by their due time (Unix ms):
    /// `<stream>:scheduled`.
    std::string scheduled_key() const { return stream + ":scheduled"; }
    /// The hash of the scheduled messages by key: `<stream>:scheduled:messages`.
    std::string scheduled_messages_key() const { return stream + ":scheduled:messages"; }

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        // Redis deletes a key at once for an EXPIRE of 0 or less: the status would be lost.
        detail::require_within("RedisQueueOptions::status_ttl", status_ttl, std::chrono::seconds(1),
                               max_status_ttl);
        detail::require_within("RedisQueueOptions::dead_letter_ttl", dead_letter_ttl,
                               std::chrono::seconds(1), max_dead_letter_ttl);
        // Otherwise a message queued under the right key would overwrite one of them.
        for (const std::string& key :
             {state_counts_key(), dead_letter_key(), dead_letter_index_key(), scheduled_key(),
              scheduled_messages_key()}) {
            if (key.rfind(status_prefix, 0) != 0) continue;
            detail::refuse_setting("RedisQueueOptions::status_prefix",
                                   detail::quote_for_error(status_prefix) +
                                       " starts the queue's own key " +
                                       detail::quote_for_error(key) +
                                       ", which a message's status could then overwrite; give "
                                       "the statuses a prefix of their own");
        }
    }
};

/// A queued message's life: [scheduled →] queued → sending → accepted | failed | unknown; or
/// scheduled → cancelled.
enum class QueuedState { queued, sending, accepted, failed, unknown, scheduled, cancelled };

/// The state's name, as the status hash stores it (part of the queue's data format).
constexpr const char* to_string(QueuedState state) noexcept {
    switch (state) {
        case QueuedState::queued:
            return "queued";
        case QueuedState::sending:
            return "sending";
        case QueuedState::accepted:
            return "accepted";
        case QueuedState::failed:
            return "failed";
        case QueuedState::unknown:
            return "unknown";
        case QueuedState::scheduled:
            return "scheduled";
        case QueuedState::cancelled:
            return "cancelled";
    }
    return "unknown";
}

/// What a producer can read back about a message it queued.
struct QueuedStatus {
    QueuedState state = QueuedState::queued;
    std::string message_id;  ///< SendGrid's X-Message-Id, once accepted
    int http_status = 0;
    std::string reason;  ///< why it failed, or why its outcome is unknown
    std::string worker;  ///< the consumer that sent it
    /// When it was scheduled for (enqueue with a not_before, to the millisecond); none when it
    /// was queued to be sent at once.
    std::optional<std::chrono::system_clock::time_point> not_before;
};

namespace detail {

/// Every state, in the order of their life (and of `sendgrid_queue_messages_total`).
inline constexpr std::array<QueuedState, 7> queued_states{
    QueuedState::scheduled, QueuedState::queued,  QueuedState::sending,  QueuedState::accepted,
    QueuedState::failed,    QueuedState::unknown, QueuedState::cancelled};

/// The state named `text` (see to_string); nullopt for a name no state has.
inline std::optional<QueuedState> queued_state_from(const std::string& text) {
    for (QueuedState state : queued_states) {
        if (text == to_string(state)) return state;
    }
    return std::nullopt;
}

/// A status hash's `state` field as producers and workers read it. Missing is "queued", as in
/// the transition script. A name no state has reads as `unknown`: what it means is not this
/// version's to tell, so a worker treats the message as finished and never sends it.
inline QueuedState stored_state(const RedisValue& field) {
    if (field.is_nil()) return QueuedState::queued;
    return queued_state_from(field.text).value_or(QueuedState::unknown);
}

/// The custom_arg a worker puts each message's queue key in, unless told otherwise.
inline constexpr const char* default_queue_key_arg = "sendgrid_backend_queue_key";

inline std::string unix_now_text() {
    return std::to_string(static_cast<long long>(std::time(nullptr)));
}

/// Runs `command` until Redis has answered it, reconnecting as the client does; for commands
/// that may run twice without harm (HSET of the same values, XACK, XDEL, HGETALL).
template <class Command>
auto retry_idempotent(Command&& command, int tries = 20) {
    for (int attempt = 1;; ++attempt) {
        try {
            return command();
        } catch (const RedisConnectionLost&) {
            if (attempt >= tries) throw;
        }
    }
}

}  // namespace detail

/// The producer's side, and the status reader. Thread-safe as its RedisClient.
class RedisMailQueue {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisMailQueue(std::shared_ptr<RedisClient> redis, RedisQueueOptions options = {})
        : redis_(std::move(redis)), options_(std::move(options)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        options_.validate();
    }

    /// Queues `message` durably and returns its key (`key`, or a fresh random one). Once this
    /// returns, the message is in Redis. A key that has a status already (within `status_ttl`)
    /// is not queued again: a request retried with the same key (say "order-42-confirmation")
    /// sends one mail. When the connection breaks on the way, the step is simply run again:
    /// it is atomic, and it queues nothing twice.
    /// @throws InvalidMessage naming the field when no worker could send the message (what
    ///         `send_messages` refuses, checked before anything is stored; repeated recipients
    ///         pass, since a worker's backend may drop them) or it cannot be stored; QueueFull
    ///         when `max_length` entries are waiting; RedisError when Redis stays out of reach.
    std::string enqueue(const EmailMessage& message, std::string key = "") {
        return enqueue_once(message, std::move(key)).first;
    }

    /// As enqueue(), and also says whether this call queued it (false: the key was queued
    /// before, and nothing was added).
    std::pair<std::string, bool> enqueue_once(const EmailMessage& message, std::string key = "") {
        return store(message, std::move(key), std::nullopt);
    }

    /// Queues `message` to be sent no earlier than `not_before` (by Redis' clock), as enqueue()
    /// does otherwise (the same key rules and checks, before anything is stored). Until it is
    /// due it waits with status "scheduled" (QueuedStatus::not_before), which lives the wait plus
    /// `status_ttl`, and can be cancelled; then a worker's mover queues it (see
    /// RedisScheduleMover for how late that can be). A `not_before` already past queues it at
    /// once. Workers must be upgraded before producers schedule (see the file comment).
    /// @throws InvalidMessage naming `not_before` when it is more than `max_schedule_ahead`
    ///         ahead; otherwise as enqueue().
    std::string enqueue(const EmailMessage& message,
                        std::chrono::system_clock::time_point not_before, std::string key = "") {
        return enqueue_once(message, not_before, std::move(key)).first;
    }

    /// As enqueue() with `not_before`, and also says whether this call queued it.
    std::pair<std::string, bool> enqueue_once(const EmailMessage& message,
                                              std::chrono::system_clock::time_point not_before,
                                              std::string key = "") {
        return store(message, std::move(key), due_ms(not_before));
    }

    /// Cancels the message scheduled under `key` while it waits: it is never sent, and its
    /// status becomes "cancelled" (kept `status_ttl`; the key is not queued again meanwhile).
    /// Returns false when it was not waiting: never scheduled, moved to the stream already (a
    /// worker may be sending it), or cancelled before. Atomic against the movers: either this
    /// cancels it or a mover moves it, never both. Safe to call again after a lost answer.
    /// @throws RedisError when Redis stays out of reach.
    bool cancel(const std::string& key) {
        // The message, for the tracker's record of it (read first: the cancel deletes it).
        std::optional<std::string> entry;
        if (options_.statuses) {
            const RedisValue stored = detail::retry_idempotent([&] {
                return redis_->command({"HGET", options_.scheduled_messages_key(), key});
            });
            if (stored.type == RedisValue::Type::string) entry = stored.text;
        }
        const std::vector<std::vector<std::string>> call{
            {"4", options_.scheduled_key(), options_.scheduled_messages_key(),
             options_.status_prefix + key, options_.state_counts_key(), key, random_key(),
             std::to_string(options_.status_ttl.count()), detail::unix_now_text()}};
        const RedisValue answer = detail::retry_idempotent([&] {
            return detail::stored_script<&detail::cancel_script>().run(*redis_, call).at(0);
        });
        if (answer.is_error()) throw RedisError("Redis did not cancel the message: " + answer.text);
        const bool cancelled = answer.integer == 1;
        if (cancelled && entry) {
            try {  // cancelled: a missing record in the tracker is no reason to fail
                record_in_tracker(deserialize_message(*entry), key, DeliveryState::failed,
                                  "cancelled");
            } catch (...) {
            }
        }
        return cancelled;
    }

    /// How far ahead `enqueue` schedules at most.
    static constexpr std::chrono::hours max_schedule_ahead{24 * 366};

    /// The status of the message queued under `key`; nullopt when there is none (never queued,
    /// or expired after `status_ttl`).
    std::optional<QueuedStatus> status(const std::string& key) const {
        const RedisValue fields = detail::retry_idempotent([&] {
            return redis_->command({"HGETALL", options_.status_prefix + key});
        });
        if (fields.elements.empty()) return std::nullopt;
        QueuedStatus status;
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
            const std::string& name = fields.elements[i].text;
            const std::string& value = fields.elements[i + 1].text;
            if (name == "state") {
                status.state = detail::stored_state(fields.elements[i + 1]);
            } else if (name == "message_id") {
                status.message_id = value;
            } else if (name == "http_status") {
                status.http_status = static_cast<int>(detail::parse_decimal(value, 3).value_or(0));
            } else if (name == "reason") {
                status.reason = value;
            } else if (name == "worker") {
                status.worker = value;
            } else if (name == "not_before") {
                if (const auto ms = detail::parse_decimal(value)) {
                    status.not_before = std::chrono::system_clock::time_point(
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::milliseconds(*ms)));
                }
            }
        }
        return status;
    }

    const RedisQueueOptions& options() const noexcept { return options_; }

  private:
    /// Stores `message` under `key` (a fresh one if empty): queued, or scheduled for `due`
    /// (Unix ms). Returns the key and whether this call stored it.
    std::pair<std::string, bool> store(const EmailMessage& message, std::string key,
                                       std::optional<std::int64_t> due) {
        if (key.empty()) key = random_key();
        check_sendable(message, key);
        // enqueue_script's keys and arguments; schedule_script's add theirs after each.
        std::vector<std::string> call{"3", options_.stream, options_.status_prefix + key,
                                      options_.state_counts_key()};
        if (due) {
            call[0] = "5";
            call.push_back(options_.scheduled_key());
            call.push_back(options_.scheduled_messages_key());
        }
        call.insert(call.end(), {key, serialize_message(message), detail::unix_now_text(),
                                 std::to_string(options_.status_ttl.count()),
                                 std::to_string(options_.max_length)});
        if (due) call.push_back(std::to_string(*due));
        detail::StoredScript& script = due ? detail::stored_script<&detail::schedule_script>()
                                           : detail::stored_script<&detail::enqueue_script>();
        const RedisValue answer =
            detail::retry_idempotent([&] { return script.run(*redis_, {call}).at(0); });
        if (answer.is_error()) throw RedisError("Redis did not queue the message: " + answer.text);
        if (answer.integer < 0) {
            throw QueueFull(std::to_string(options_.max_length) +
                            " messages are queued already (RedisQueueOptions::max_length)");
        }
        if (answer.integer == 1) {
            try {  // the message is queued: a missing "queued" in the record is no reason to fail
                record_in_tracker(message, key, DeliveryState::queued);
            } catch (...) {
            }
        }
        return {key, answer.integer == 1};
    }

    /// Refuses what every worker's backend would refuse, before it is durable: once queued, a
    /// message that cannot be sent only fails later, where its producer no longer hears of it.
    /// Checked as a worker sends it: with its key in the custom_arg a worker adds (under the
    /// default name; another name differs by a few bytes), which counts toward SendGrid's limits.
    static void check_sendable(const EmailMessage& message, const std::string& key) {
        EmailMessage as_sent = message;  // a copy: the producer's message stays as it gave it
        as_sent.custom_args[detail::default_queue_key_arg] = key;
        // The tracking key a worker's backend adds (by default), where it adds it: it counts
        // toward each personalization's custom_args limit. An empty one, or a personalization's
        // that differs, the backend refuses.
        const std::string arg = default_tracking_arg;
        const std::string* own = detail::own_tracking_key(as_sent, arg);
        const std::string tracking_key = own != nullptr ? *own : key;
        const detail::PlacedTrackingKey placed(as_sent, arg, tracking_key);
        PayloadOptions lenient;
        lenient.deduplicate_recipients = true;  // a worker's backend may be set to drop repeats
        const std::size_t bytes = serialize_payload(as_sent, lenient).size();
        if (bytes > limits::max_payload_bytes) {
            throw InvalidMessage("payload", "the request would be " + std::to_string(bytes) +
                                                " bytes; SendGrid accepts at most 30 MB");
        }
    }

    static std::string random_key() { return detail::random_key(); }

    /// `not_before` in Unix ms, rounded up (a mover comparing ms never moves it early); 0 for a
    /// time before 1970 (due at once).
    /// @throws InvalidMessage naming `not_before` when it is more than `max_schedule_ahead` ahead.
    static std::int64_t due_ms(std::chrono::system_clock::time_point not_before) {
        const auto now = std::chrono::system_clock::now();
        if (not_before > now + max_schedule_ahead) {
            const auto hours = std::chrono::duration_cast<std::chrono::hours>(not_before - now);
            throw InvalidMessage("not_before",
                                 "is " + std::to_string(hours.count()) +
                                     " hours ahead; a message is scheduled at most 366 days "
                                     "ahead (RedisMailQueue::max_schedule_ahead)");
        }
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(not_before.time_since_epoch());
        return std::max<std::int64_t>(0, ms.count());
    }

    /// Records `state` in the queue's status tracker, if it has one: under the message's own
    /// tracking key if it brings one (as a worker sends it), else under its queue key.
    void record_in_tracker(const EmailMessage& message, const std::string& key, DeliveryState state,
                           const std::string& reason = std::string()) const {
        if (!options_.statuses) return;
        auto own = message.custom_args.find(options_.statuses->tracking_arg());
        const bool has_own = own != message.custom_args.end() && !own->second.empty();
        options_.statuses->record_queue(has_own ? own->second : key, state, reason);
    }

    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END

// Users who include only this header use the worker too (it had no header of its own before):
// worker.hpp includes this one first, and #pragma once ends the cycle. The worker runs the
// scheduled messages' mover, whose header includes the worker's after its own class, so that
// whichever of the three a program includes first, the mover is defined before the worker.
#include "sendgrid_backend/redis/schedule.hpp"
