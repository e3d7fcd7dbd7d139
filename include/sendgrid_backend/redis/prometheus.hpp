#pragma once

/// @file
/// Prometheus metrics of one durable mail queue (redis/queue.hpp), read from Redis at scrape
/// time, so any process that reaches Redis can serve them: a worker, or the web server. Link
/// `sendgrid_backend::redis` and `sendgrid_backend::prometheus`.
///
/// @code
/// auto redis = std::make_shared<sendgrid_backend::RedisClient>(options);  // a client of its own
/// auto queue_metrics = std::make_shared<sendgrid_backend::RedisQueueMetrics>(
///     redis, queue_options, std::vector<std::pair<std::string, std::string>>{{"queue", "mail"}});
/// exposer.RegisterCollectable(queue_metrics);
/// @endcode
///
/// A scrape reads the stream, its consumer group and the state counts in one MULTI/EXEC (one
/// round trip; the numbers agree with each other), then each consumer's oldest pending entry
/// (a second round trip, for `sendgrid_queue_oldest_pending_age_seconds`). Waiting entries are the
/// group's `lag` when Redis can tell it, else the stream's length minus the pending entries:
/// workers XACK and XDEL every entry they finish, so whatever is left is pending or not yet
/// delivered. Pending entries are labelled by consumer: workers are named by their operator (or
/// "<host>-<pid>"), and only consumers holding entries have a series, so their number stays that of
/// the live and recently dead workers. The states are counted as messages enter them, by the
/// queue's own scripts, into one hash next to the stream (RedisQueueOptions::state_counts_key),
/// since the statuses are one key per message: counting those would read them all. The counts start
/// when this version's producers and workers do. When Redis cannot be read, `sendgrid_queue_up` is
/// 0 and the other families are left out; the scrape itself still succeeds.

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/prometheus.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/queue.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

/// What one scrape reads of a queue.
struct QueueSnapshot {
    std::int64_t waiting = 0;
    std::vector<std::pair<std::string, std::int64_t>> pending;  ///< by consumer
    std::int64_t oldest_pending_idle_ms = 0;                    ///< see longest_held_ms
    std::array<std::int64_t, queued_states.size()> entered{};   ///< by queued_states
};

/// An integer answer, or a decimal one (XPENDING gives its per-consumer counts as strings).
inline std::int64_t integer_of(const RedisValue& value) {
    if (value.type == RedisValue::Type::integer) return value.integer;
    if (value.is_nil()) return 0;
    const auto number = parse_decimal(value.text);
    if (!number) throw RedisError("unexpected answer from Redis: " + quote_for_error(value.text));
    return *number;
}

/// The value after `name` in a flat name/value list (an XINFO answer), or null.
inline const RedisValue* field_of(const RedisValue& pairs, std::string_view name) {
    for (std::size_t i = 0; i + 1 < pairs.elements.size(); i += 2) {
        if (pairs.elements[i].text == name) return &pairs.elements[i + 1];
    }
    return nullptr;
}

/// The group's entry of an XINFO GROUPS answer, or null when the group is not created yet.
inline const RedisValue* group_of(const RedisValue& groups, const std::string& group) {
    for (const RedisValue& entry : groups.elements) {
        const RedisValue* name = field_of(entry, "name");
        if (name != nullptr && name->text == group) return &entry;
    }
    return nullptr;
}

inline RedisError queue_read_failed(const RedisQueueOptions& queue, const std::string& why) {
    return RedisError("reading the queue " + quote_for_error(queue.stream) + " failed: " + why);
}

/// The longest time, in ms, any consumer has held its lowest-ID pending entry since that entry
/// was last delivered to it (read or claimed); 0 when none is pending. The group's lowest-ID
/// entry alone would not do: XAUTOCLAIM claims in ID order and resets the idle time of what it
/// claims, so after a partial claim that entry is fresh while the next ones still sit at a dead
/// consumer. Reading each consumer's is one round trip; consumers are few (see the file comment).
/// @throws RedisError when Redis refuses a command.
inline std::int64_t longest_held_ms(
    RedisClient& redis, const RedisQueueOptions& queue,
    const std::vector<std::pair<std::string, std::int64_t>>& pending) {
    if (pending.empty()) return 0;
    std::vector<std::vector<std::string>> commands;
    for (const auto& consumer : pending) {
        commands.push_back({"XPENDING", queue.stream, queue.group, "-", "+", "1", consumer.first});
    }
    std::int64_t longest = 0;
    for (const RedisValue& answer : redis.pipeline(commands)) {
        if (answer.is_error()) throw queue_read_failed(queue, answer.text);
        // [[id, consumer, idle ms, deliveries]], or none when it finished them meanwhile.
        if (!answer.elements.empty() && answer.elements[0].elements.size() >= 3) {
            longest = std::max(longest, integer_of(answer.elements[0].elements[2]));
        }
    }
    return longest;
}

/// @throws RedisError when Redis cannot be reached or refuses a command.
inline QueueSnapshot read_queue_snapshot(RedisClient& redis, const RedisQueueOptions& queue) {
    std::vector<std::string> counts{"HMGET", queue.state_counts_key()};
    for (QueuedState state : queued_states) counts.emplace_back(to_string(state));
    const std::vector<RedisValue> answers = redis.pipeline({{"MULTI"},
                                                            {"XLEN", queue.stream},
                                                            {"XINFO", "GROUPS", queue.stream},
                                                            {"XPENDING", queue.stream, queue.group},
                                                            counts,
                                                            {"EXEC"}});
    const RedisValue& exec = answers.back();
    if (exec.is_error() || exec.elements.size() != 4) {
        std::string why = exec.text;
        for (const RedisValue& answer : answers) {
            if (answer.is_error()) {
                why = answer.text;  // the command refused as it was queued, behind EXECABORT
                break;
            }
        }
        throw queue_read_failed(queue, why);
    }
    const RedisValue& length = exec.elements[0];
    const RedisValue& groups = exec.elements[1];
    const RedisValue& summary = exec.elements[2];
    const RedisValue& entered = exec.elements[3];
    if (length.is_error()) throw queue_read_failed(queue, length.text);
    if (entered.is_error()) throw queue_read_failed(queue, entered.text);

    QueueSnapshot snapshot;
    for (std::size_t i = 0; i < snapshot.entered.size() && i < entered.elements.size(); ++i) {
        snapshot.entered[i] = integer_of(entered.elements[i]);
    }
    // No stream yet (XINFO: no such key), or no worker has created the group: all is waiting.
    const RedisValue* group = groups.is_error() ? nullptr : group_of(groups, queue.group);
    if (groups.is_error() && length.integer != 0) throw queue_read_failed(queue, groups.text);
    if (group == nullptr) {
        snapshot.waiting = length.integer;
        return snapshot;
    }
    if (summary.is_error()) throw queue_read_failed(queue, summary.text);
    const std::int64_t pending = summary.elements.empty() ? 0 : integer_of(summary.elements[0]);
    if (summary.elements.size() == 4) {
        for (const RedisValue& consumer : summary.elements[3].elements) {
            if (consumer.elements.size() != 2) continue;
            snapshot.pending.emplace_back(consumer.elements[0].text,
                                          integer_of(consumer.elements[1]));
        }
    }
    // Redis 7 knows the lag unless entries were deleted after the group's last read (which the
    // workers' XDEL often causes); it answers nil then.
    const RedisValue* lag = field_of(*group, "lag");
    snapshot.waiting = lag != nullptr && lag->type == RedisValue::Type::integer
                           ? lag->integer
                           : std::max<std::int64_t>(0, length.integer - pending);
    snapshot.oldest_pending_idle_ms = longest_held_ms(redis, queue, snapshot.pending);
    return snapshot;
}

}  // namespace detail

/// A queue's backlog and its messages' states for Prometheus, read from Redis at each scrape.
/// See the file comment. Register it (it is the Collectable) with a `prometheus::Exposer`, which
/// keeps a weak reference. Thread-safe as its RedisClient; each scrape waits for that client, so
/// give it one of its own with a short timeout and reconnect_for rather than a worker's, which
/// holds its client through a blocking read.
class RedisQueueMetrics : public prometheus::Collectable {
  public:
    /// `constant_labels` go on every series, as PrometheusOptions::constant_labels (a process
    /// serving two queues tells them apart by one, say {"queue", "billing"}).
    /// @throws ImproperlyConfigured when `redis` is null, a queue option is out of range, or a
    ///         constant label is no Prometheus label name or is named "consumer" or "state".
    explicit RedisQueueMetrics(std::shared_ptr<RedisClient> redis, RedisQueueOptions queue = {},
                               detail::ConstantLabels constant_labels = {})
        : redis_(std::move(redis)),
          queue_(std::move(queue)),
          constant_labels_(std::move(constant_labels)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        queue_.validate();
        detail::require_label_names(constant_labels_, "constant_labels", {"consumer", "state"});
    }

    /// The queue's metrics; never throws for Redis (see `sendgrid_queue_up`).
    std::vector<prometheus::MetricFamily> Collect() const override {
        std::optional<detail::QueueSnapshot> snapshot;
        try {
            // Read-only, so run again once when the connection broke (Redis restarted).
            snapshot = detail::retry_idempotent(
                [&] { return detail::read_queue_snapshot(*redis_, queue_); }, 2);
        } catch (...) {
            // An exception would fail the whole scrape, every other collectable's metrics too.
        }
        std::vector<prometheus::MetricFamily> families;
        auto& up = detail::add_family(
            families, "sendgrid_queue_up",
            "Whether this scrape could read the queue from Redis (1) or not (0).",
            prometheus::MetricType::Gauge);
        detail::add_series(up, constant_labels_).gauge.value = snapshot ? 1 : 0;
        if (!snapshot) return families;

        auto& waiting =
            detail::add_family(families, "sendgrid_queue_waiting_entries",
                               "Entries in the queue's stream not yet delivered to any worker.",
                               prometheus::MetricType::Gauge);
        detail::add_series(waiting, constant_labels_).gauge.value =
            static_cast<double>(snapshot->waiting);
        auto& pending =
            detail::add_family(families, "sendgrid_queue_pending_entries",
                               "Entries delivered to a worker and not yet finished, by consumer "
                               "(only consumers holding some).",
                               prometheus::MetricType::Gauge);
        for (const auto& [consumer, count] : snapshot->pending) {
            detail::add_series(pending, constant_labels_, "consumer", consumer).gauge.value =
                static_cast<double>(count);
        }
        auto& oldest = detail::add_family(
            families, "sendgrid_queue_oldest_pending_age_seconds",
            "Longest time a consumer has held its oldest pending entry (its lowest stream ID) "
            "since that entry was delivered to it or claimed by it; 0 when none is pending.",
            prometheus::MetricType::Gauge);
        detail::add_series(oldest, constant_labels_).gauge.value =
            static_cast<double>(snapshot->oldest_pending_idle_ms) / 1000;
        auto& entered = detail::add_family(
            families, "sendgrid_queue_messages_total",
            "Messages that entered each state of the queue: queued once, a final state once "
            "(both again when a dead letter is retried), sending before each send (again when a "
            "worker resends a claimed message, WorkerOptions::resend_unknown); scheduled once "
            "before queued, or before cancelled, when enqueued with a not_before.",
            prometheus::MetricType::Counter);
        for (std::size_t i = 0; i < detail::queued_states.size(); ++i) {
            detail::add_series(entered, constant_labels_, "state",
                               to_string(detail::queued_states[i]))
                .counter.value = static_cast<double>(snapshot->entered[i]);
        }
        return families;
    }

    /// Every metric in Prometheus' text format, for an application with its own HTTP server.
    std::string text() const { return prometheus::TextSerializer().Serialize(Collect()); }

  private:
    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions queue_;
    detail::ConstantLabels constant_labels_;
};

SENDGRID_BACKEND_NAMESPACE_END
