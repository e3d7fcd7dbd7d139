#pragma once

/// @file
/// Prometheus metrics of the sending and the receiving side, for the ecosystem's own client
/// library (prometheus-cpp). `PrometheusMetrics` observes `sendgrid_email_sent`,
/// `sendgrid_event_received` and `sendgrid_webhook_handled` and counts what they carry; hand
/// its `collectable()` to a `prometheus::Exposer` (or serialize it yourself) to serve
/// `/metrics`. Link `sendgrid_backend::prometheus` (prometheus-cpp core; the Exposer is in
/// prometheus-cpp pull).
///
/// @code
/// prometheus::Exposer exposer("127.0.0.1:9464");
/// sendgrid_backend::PrometheusOptions options;
/// options.constant_labels = {{"service", "billing"}};
/// sendgrid_backend::PrometheusMetrics metrics(options);   // counts from now on
/// exposer.RegisterCollectable(metrics.collectable());
/// @endcode
///
/// Each value is a relaxed atomic integer of this library, read into prometheus-cpp's types at
/// scrape time: a registry's histogram takes a mutex for every observation, which a sender pays
/// for every message. No label holds anything from a message (no address, subject or key): every
/// label value comes from a closed list, so the number of series is fixed.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
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
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/webhook_events.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// What `PrometheusMetrics` adds to every series, and its histograms' buckets.
struct PrometheusOptions {
    /// Constant labels on every series, e.g. {{"service", "billing"}, {"region", "eu"}}.
    std::vector<std::pair<std::string, std::string>> constant_labels;
    /// Upper bounds of `sendgrid_send_duration_seconds`: one send, first try to final outcome,
    /// retry waits included (from a 50 ms answer to a minute of 429 waits).
    std::vector<double> duration_buckets{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    /// Upper bounds of `sendgrid_send_tries`.
    std::vector<double> tries_buckets{1, 2, 3, 4, 5, 6, 8, 10};
};

namespace detail {

/// A counter: written on every send, read only at scrape time, so a relaxed increment.
using MetricCount = std::atomic<std::uint64_t>;

inline void bump(MetricCount& count, std::uint64_t by = 1) noexcept {
    count.fetch_add(by, std::memory_order_relaxed);
}

inline double read(const MetricCount& count) noexcept {
    return static_cast<double>(count.load(std::memory_order_relaxed));
}

/// A histogram over integer observations in `unit`s (nanoseconds, tries): one relaxed
/// increment for the bucket and one for the sum, no lock.
class IntegerHistogram {
  public:
    IntegerHistogram(const std::vector<double>& bounds, double unit, const char* option)
        : bounds_(bounds), unit_(unit), counts_(new MetricCount[bounds.size() + 1]) {
        for (std::size_t i = 0; i < bounds_.size(); ++i) {
            if (!(bounds_[i] > 0) || (i > 0 && !(bounds_[i] > bounds_[i - 1])) ||
                bounds_[i] * unit > 1.8e19) {
                throw ImproperlyConfigured(
                    option, "must be positive, finite and increasing (bucket " + std::to_string(i) +
                                " is not)");
            }
            limits_.push_back(static_cast<std::uint64_t>(bounds_[i] * unit));
        }
        for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
    }

    void observe(std::uint64_t value) noexcept {
        std::size_t bucket = 0;
        while (bucket < limits_.size() && value > limits_[bucket]) ++bucket;
        bump(counts_[bucket]);
        bump(sum_, value);
    }

    prometheus::ClientMetric::Histogram read() const {
        prometheus::ClientMetric::Histogram histogram;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= bounds_.size(); ++i) {
            cumulative += counts_[i].load(std::memory_order_relaxed);
            prometheus::ClientMetric::Bucket bucket;
            bucket.cumulative_count = cumulative;
            bucket.upper_bound =
                i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
            histogram.bucket.push_back(bucket);
        }
        histogram.sample_count = cumulative;
        histogram.sample_sum = static_cast<double>(sum_.load(std::memory_order_relaxed)) / unit_;
        return histogram;
    }

  private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> limits_;  ///< bounds_ in units; a value at a bound is inside it
    double unit_;
    std::unique_ptr<MetricCount[]> counts_;  ///< per bucket, the last one +Inf
    MetricCount sum_{0};
};

/// The HTTP statuses SendGrid documents for /v3/mail/send, each its own `status` label value;
/// any other status counts under its class ("3xx").
inline constexpr std::array<int, 14> documented_statuses{200, 202, 400, 401, 403, 404, 405,
                                                         413, 415, 429, 500, 502, 503, 504};
inline constexpr std::array<const char*, 14> documented_status_labels{
    "200", "202", "400", "401", "403", "404", "405",
    "413", "415", "429", "500", "502", "503", "504"};
inline constexpr std::array<const char*, 5> status_class_labels{"1xx", "2xx", "3xx", "4xx", "5xx"};
/// Transport errors that can end a try (payload_too_large never leaves the process).
inline constexpr std::array<TransportError, 8> request_errors{
    TransportError::connection_failed, TransportError::timeout,        TransportError::tls,
    TransportError::send_failed,       TransportError::receive_failed, TransportError::bad_answer,
    TransportError::exception,         TransportError::other};

/// The `status` label of one try: its documented status, its class, the transport error when
/// no answer came, or "other_status" for a number no HTTP server sends.
struct RequestLabels {
    static constexpr std::size_t documented = documented_statuses.size();
    static constexpr std::size_t classes = status_class_labels.size();
    static constexpr std::size_t errors = request_errors.size();
    static constexpr std::size_t other_status = documented + classes + errors;
    static constexpr std::size_t count = other_status + 1;

    static std::size_t of(int http_status, TransportError error) noexcept {
        if (http_status == 0) {
            for (std::size_t i = 0; i < errors; ++i) {
                if (request_errors[i] == error) return documented + classes + i;
            }
            return documented + classes + errors - 1;  // "other"
        }
        for (std::size_t i = 0; i < documented; ++i) {
            if (documented_statuses[i] == http_status) return i;
        }
        if (http_status >= 100 && http_status <= 599) {
            return documented + static_cast<std::size_t>(http_status / 100 - 1);
        }
        return other_status;
    }

    static const char* name(std::size_t index) noexcept {
        if (index < documented) return documented_status_labels[index];
        if (index < documented + classes) return status_class_labels[index - documented];
        if (index < other_status) return to_string(request_errors[index - documented - classes]);
        return "other_status";
    }
};

/// The outcomes of a send that `sendgrid_messages_total` counts (not_attempted never is).
inline constexpr std::array<SendStatus, 6> counted_outcomes{
    SendStatus::accepted, SendStatus::rejected, SendStatus::transport_failed,
    SendStatus::unknown,  SendStatus::invalid,  SendStatus::cancelled};

/// `sendgrid_webhook_requests_total`'s `result`: accepted requests as verified, unsigned or
/// replayed (every event a duplicate), refused ones by their WebhookRefusal.
struct WebhookRequestLabels {
    static constexpr std::size_t verified = 0, unsigned_ = 1, replayed = 2;
    static constexpr std::size_t refusals = 9;  ///< WebhookRefusal without none
    static constexpr std::size_t count = 3 + refusals;

    static std::size_t of(const WebhookResult& result) noexcept {
        if (!result.accepted()) return 2 + static_cast<std::size_t>(result.refusal);
        if (result.events.empty() && result.duplicates > 0) return replayed;
        return result.verified ? verified : unsigned_;
    }

    static const char* name(std::size_t index) noexcept {
        if (index == verified) return "verified";
        if (index == unsigned_) return "unsigned";
        if (index == replayed) return "replayed";
        return to_string(static_cast<WebhookRefusal>(index - 2));
    }
};

/// Prometheus' label name syntax; names starting "__" are reserved for Prometheus itself.
inline bool is_label_name(const std::string& name) noexcept {
    if (name.empty() || name.rfind("__", 0) == 0) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/// Labels on every series of a collector (PrometheusOptions::constant_labels).
using ConstantLabels = std::vector<std::pair<std::string, std::string>>;

/// Refuses (ImproperlyConfigured naming `option`) a constant label that is no Prometheus label
/// name, that one of the metrics uses itself (`reserved`, and "le" of the histograms), or that
/// is given twice (Prometheus refuses a whole scrape with a repeated label).
inline void require_label_names(const ConstantLabels& labels, const char* option,
                                std::initializer_list<const char*> reserved) {
    for (const auto& [name, value] : labels) {
        if (!is_label_name(name)) {
            throw ImproperlyConfigured(option, "has \"" + name +
                                                   "\", which is no Prometheus label name "
                                                   "([a-zA-Z_][a-zA-Z0-9_]*, not starting __)");
        }
        bool taken = name == "le";
        for (const char* used : reserved) taken = taken || name == used;
        if (!is_valid_utf8(value)) {
            throw ImproperlyConfigured(option, "has a value of \"" + name +
                                                   "\" that is not UTF-8 (Prometheus refuses "
                                                   "the scrape)");
        }
        std::size_t times = 0;
        for (const auto& other : labels) times += other.first == name ? 1 : 0;
        if (times > 1) throw ImproperlyConfigured(option, "has \"" + name + "\" twice");
        if (taken) {
            throw ImproperlyConfigured(option, "has \"" + name + "\", which a metric uses itself");
        }
    }
}

/// A new series of `family`: the constant labels and, when `name` is given, `name`=`value`.
/// The caller sets its value.
inline prometheus::ClientMetric& add_series(prometheus::MetricFamily& family,
                                            const ConstantLabels& constant,
                                            const char* name = nullptr,
                                            const std::string& value = std::string()) {
    family.metric.emplace_back();
    prometheus::ClientMetric& metric = family.metric.back();
    for (const auto& [label, text] : constant) metric.label.push_back({label, text});
    if (name != nullptr) metric.label.push_back({name, value});
    return metric;
}

/// A new, empty family at the end of `families`.
inline prometheus::MetricFamily& add_family(std::vector<prometheus::MetricFamily>& families,
                                            const char* name, const char* help,
                                            prometheus::MetricType type) {
    families.emplace_back();
    families.back().name = name;
    families.back().help = help;
    families.back().type = type;
    return families.back();
}

inline constexpr std::size_t event_type_count = static_cast<std::size_t>(EventType::unknown) + 1;
static_assert(static_cast<std::size_t>(WebhookRefusal::status_store_failed) ==
                  WebhookRequestLabels::refusals,
              "a WebhookRefusal was added: WebhookRequestLabels counts them");

}  // namespace detail

/// Counts sends, tries and webhook traffic for Prometheus. See the file comment. Thread-safe:
/// its handlers run on any thread at once, and a scrape may run beside them. Destroying it
/// disconnects its handlers; a call already running keeps what it counts into alive.
class PrometheusMetrics {
  public:
    /// Observes the signals. One at a time per process: the signals are the process's, so a
    /// second would count every send again, and a scrape of both would repeat every family,
    /// which Prometheus refuses.
    /// @throws ImproperlyConfigured for a bucket list that is not positive and increasing, a
    ///         constant label Prometheus cannot take, or a PrometheusMetrics alive already.
    explicit PrometheusMetrics(PrometheusOptions options = {})
        : counts_(std::make_shared<Counts>(std::move(options))) {
        if (alive().exchange(true)) {
            throw ImproperlyConfigured("PrometheusMetrics",
                                       "one is alive already in this process; share it (its "
                                       "collectable() can be registered with several Exposers)");
        }
        try {
            std::shared_ptr<Counts> counts = counts_;
            // Observers, not handlers: no lock per handler on a send (signals.hpp, observe).
            connections_[0] = sendgrid_email_sent.observe(
                [counts](const SendgridBackend&, const EmailMessage& message, bool) noexcept {
                    counts->record(message.outcome);
                });
            connections_[1] = sendgrid_event_received.observe(
                [counts](const EventWebhook&, const WebhookEvent& event) noexcept {
                    counts->record(event);
                });
            connections_[2] = sendgrid_webhook_handled.observe(
                [counts](const EventWebhook&, const WebhookResult& result) noexcept {
                    counts->record(result);
                });
        } catch (...) {
            alive().store(false);  // out of memory: no PrometheusMetrics is alive after all
            throw;
        }
    }

    PrometheusMetrics(const PrometheusMetrics&) = delete;
    PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;
    ~PrometheusMetrics() {
        for (ObserverConnection& connection : connections_) connection.disconnect();
        alive().store(false);
    }

    /// For `prometheus::Exposer::RegisterCollectable` (which keeps a weak reference).
    std::shared_ptr<prometheus::Collectable> collectable() const { return counts_; }

    /// Every metric in Prometheus' text format, for an application that serves `/metrics`
    /// with its own HTTP server.
    std::string text() const { return prometheus::TextSerializer().Serialize(counts_->Collect()); }

  private:
    static std::atomic<bool>& alive() noexcept {
        static std::atomic<bool> flag{false};
        return flag;
    }

    class Counts : public prometheus::Collectable {
      public:
        explicit Counts(PrometheusOptions options)
            : options_(std::move(options)),
              duration_(options_.duration_buckets, 1e9, "PrometheusOptions::duration_buckets"),
              tries_(options_.tries_buckets, 1, "PrometheusOptions::tries_buckets") {
            detail::require_label_names(options_.constant_labels,
                                        "PrometheusOptions::constant_labels",
                                        {"outcome", "status", "event", "result"});
        }

        void record(const SendOutcome& outcome) noexcept {
            bump(messages_[outcome_index(outcome.status)]);
            if (outcome.tries <= 0) return;  // never handed to the transport
            // At most tries - 1: an outcome interrupted by an error (out of memory) may keep its
            // last try both there and as the final answer.
            const std::size_t earlier =
                std::min(outcome.earlier_tries.size(), static_cast<std::size_t>(outcome.tries - 1));
            for (std::size_t i = 0; i < earlier; ++i) {
                count_request(outcome.earlier_tries[i].http_status,
                              outcome.earlier_tries[i].transport_error);
            }
            count_request(outcome.http_status, outcome.transport_error);
            const auto nanoseconds = outcome.duration.count();
            duration_.observe(nanoseconds > 0 ? static_cast<std::uint64_t>(nanoseconds) : 0);
            tries_.observe(static_cast<std::uint64_t>(outcome.tries));
        }

        void record(const WebhookEvent& event) noexcept {
            const auto type = static_cast<std::size_t>(event.type);
            bump(events_[type < events_.size() ? type : events_.size() - 1]);  // else: unknown
        }

        void record(const WebhookResult& result) noexcept {
            bump(webhook_requests_[detail::WebhookRequestLabels::of(result)]);
            if (result.duplicates > 0) bump(duplicates_, result.duplicates);
        }

        std::vector<prometheus::MetricFamily> Collect() const override {
            std::vector<prometheus::MetricFamily> families;
            {
                auto& family =
                    detail::add_family(families, "sendgrid_messages_total",
                                       "Messages handed to a SendgridBackend, by final outcome.",
                                       prometheus::MetricType::Counter);
                for (std::size_t i = 0; i < messages_.size(); ++i) {
                    counter(family, "outcome", to_string(detail::counted_outcomes[i]),
                            messages_[i]);
                }
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_requests_total",
                                       "Tries of a /v3/mail/send request, by HTTP status, status "
                                       "class, or transport error when no answer came.",
                                       prometheus::MetricType::Counter);
                for (std::size_t i = 0; i < requests_.size(); ++i) {
                    counter(family, "status", detail::RequestLabels::name(i), requests_[i]);
                }
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_rate_limited_total",
                                       "Tries SendGrid answered with 429 Too Many Requests.",
                                       prometheus::MetricType::Counter);
                counter(family, nullptr, nullptr,
                        requests_[detail::RequestLabels::of(429, TransportError::none)]);
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_send_duration_seconds",
                                       "Time from a message's first try to its final outcome, "
                                       "retry waits included.",
                                       prometheus::MetricType::Histogram);
                detail::add_series(family, options_.constant_labels).histogram = duration_.read();
            }
            {
                auto& family = detail::add_family(families, "sendgrid_send_tries",
                                                  "Tries a message took until its final outcome.",
                                                  prometheus::MetricType::Histogram);
                detail::add_series(family, options_.constant_labels).histogram = tries_.read();
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_webhook_events_total",
                                       "New Event Webhook events received, by event type.",
                                       prometheus::MetricType::Counter);
                for (std::size_t i = 0; i < events_.size(); ++i) {
                    counter(family, "event", to_string(static_cast<EventType>(i)), events_[i]);
                }
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_webhook_requests_total",
                                       "Event Webhook requests, by what was done with them.",
                                       prometheus::MetricType::Counter);
                for (std::size_t i = 0; i < webhook_requests_.size(); ++i) {
                    counter(family, "result", detail::WebhookRequestLabels::name(i),
                            webhook_requests_[i]);
                }
            }
            {
                auto& family =
                    detail::add_family(families, "sendgrid_webhook_duplicate_events_total",
                                       "Event Webhook events dropped as seen before (sg_event_id).",
                                       prometheus::MetricType::Counter);
                counter(family, nullptr, nullptr, duplicates_);
            }
            return families;
        }

      private:
        using Count = detail::MetricCount;
        static void bump(Count& count, std::uint64_t by = 1) noexcept { detail::bump(count, by); }

        static std::size_t outcome_index(SendStatus status) noexcept {
            for (std::size_t i = 0; i < detail::counted_outcomes.size(); ++i) {
                if (detail::counted_outcomes[i] == status) return i;
            }
            return detail::counted_outcomes.size() - 1;  // not_attempted is never emitted
        }

        void count_request(int http_status, TransportError error) noexcept {
            bump(requests_[detail::RequestLabels::of(http_status, error)]);
        }

        void counter(prometheus::MetricFamily& family, const char* name, const char* value,
                     const Count& count) const {
            detail::add_series(family, options_.constant_labels, name, value ? value : "")
                .counter.value = detail::read(count);
        }

        PrometheusOptions options_;
        std::array<Count, detail::counted_outcomes.size()> messages_{};
        std::array<Count, detail::RequestLabels::count> requests_{};
        detail::IntegerHistogram duration_;
        detail::IntegerHistogram tries_;
        std::array<Count, detail::event_type_count> events_{};
        std::array<Count, detail::WebhookRequestLabels::count> webhook_requests_{};
        Count duplicates_{0};
    };

    std::shared_ptr<Counts> counts_;
    std::array<ObserverConnection, 3> connections_;
};

SENDGRID_BACKEND_NAMESPACE_END
