#pragma once

/// @file
/// Email metrics per day, the signals guide's "metrics and analytics" use: counters of sent and
/// failed messages, failure reasons by kind, template usage and recipient domains, kept in a
/// `MetricsStore`. `InMemoryMetricsStore` (here, thread-safe) counts for one process;
/// `RedisMetricsStore` (redis/metrics.hpp) shares the counters between processes and hosts.
///
/// @code
/// sendgrid_backend::EmailMetricsRecorder metrics(
///     std::make_shared<sendgrid_backend::InMemoryMetricsStore>());
/// auto connection = metrics.connect();  // counts every sendgrid_email_sent from now on
/// backend.send_messages(batch);
/// auto today = metrics.get_email_metrics(sendgrid_backend::utc_date());
/// @endcode

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/signals.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Counters by name for one day ("sent", "failed", "reason:<kind>", "template:<id>",
/// "domain:<domain>"). Implementations must be thread-safe.
class MetricsStore {
  public:
    virtual ~MetricsStore() = default;
    /// Adds each count to its counter of `day` ("YYYY-MM-DD"), all or nothing where the store can.
    virtual void add(const std::string& day,
                     const std::vector<std::pair<std::string, std::int64_t>>& counts) = 0;
    /// Every counter of `day`; empty when nothing was counted (or it expired).
    virtual std::map<std::string, std::int64_t> counters(const std::string& day) = 0;
};

/// Counters in this process's memory. Thread-safe.
class InMemoryMetricsStore : public MetricsStore {
  public:
    void add(const std::string& day,
             const std::vector<std::pair<std::string, std::int64_t>>& counts) override {
        std::lock_guard<std::mutex> lock(mutex_);
        auto& counters = days_[day];
        for (const auto& [name, count] : counts) counters[name] += count;
    }

    std::map<std::string, std::int64_t> counters(const std::string& day) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = days_.find(day);
        return found == days_.end() ? std::map<std::string, std::int64_t>{} : found->second;
    }

  private:
    std::mutex mutex_;
    std::map<std::string, std::map<std::string, std::int64_t>> days_;
};

/// One day's metrics, read back from the counters.
struct EmailMetrics {
    std::string date;
    std::int64_t sent = 0;
    std::int64_t failed = 0;
    std::map<std::string, std::int64_t> failure_reasons;    ///< by kind, e.g. "rejected:400"
    std::map<std::string, std::int64_t> templates;          ///< template_id of sent messages
    std::map<std::string, std::int64_t> recipient_domains;  ///< of sent messages' `to`

    /// failed / (sent + failed); 0 when nothing was counted.
    double failure_rate() const noexcept {
        const std::int64_t total = sent + failed;
        return total == 0 ? 0.0 : static_cast<double>(failed) / static_cast<double>(total);
    }
};

/// Today's date in UTC, "YYYY-MM-DD".
inline std::string utc_date(std::time_t when = std::time(nullptr)) {
    std::tm parts{};
#ifdef _WIN32
    gmtime_s(&parts, &when);
#else
    gmtime_r(&when, &parts);
#endif
    char text[16];
    std::strftime(text, sizeof text, "%Y-%m-%d", &parts);
    return text;
}

/// The kind of a failure, for counting: the status and what distinguishes it, e.g.
/// "rejected:429", "transport_failed:connection_failed", "unknown", "invalid".
inline std::string failure_kind(const SendOutcome& outcome) {
    std::string kind = to_string(outcome.status);
    if (outcome.status == SendStatus::rejected) {
        kind += ":" + std::to_string(outcome.http_status);
    } else if (outcome.status == SendStatus::transport_failed ||
               outcome.status == SendStatus::unknown) {
        if (outcome.transport_error != TransportError::none) {
            kind += std::string(":") + to_string(outcome.transport_error);
        }
    }
    return kind;
}

/// Counts each send into a MetricsStore and reads a day's metrics back (the guide's
/// `track_email_metrics` and `get_email_metrics`). Thread-safe as its store is.
class EmailMetricsRecorder {
  public:
    /// `today` names the day a send counts for (UTC by default; inject one in tests).
    explicit EmailMetricsRecorder(
        std::shared_ptr<MetricsStore> store,
        std::function<std::string()> today = [] { return utc_date(); })
        : store_(std::move(store)), today_(std::move(today)) {}

    /// Counts one send: sent, or failed with its kind; for sent ones also the template and
    /// each `to` address's domain (lower case). One `add` per message.
    void record(const EmailMessage& message, bool fail_flag) {
        std::vector<std::pair<std::string, std::int64_t>> counts;
        if (fail_flag) {
            counts.emplace_back("failed", 1);
            counts.emplace_back("reason:" + failure_kind(message.outcome), 1);
        } else {
            counts.emplace_back("sent", 1);
            if (!message.template_id.empty()) {
                counts.emplace_back("template:" + message.template_id, 1);
            }
            for (const std::string& recipient : message.to) {
                const std::size_t at = recipient.rfind('@');
                if (at == std::string::npos) continue;
                std::string_view domain = detail::trim(std::string_view(recipient).substr(at + 1));
                if (!domain.empty() && domain.back() == '>') domain.remove_suffix(1);
                if (!domain.empty())
                    counts.emplace_back("domain:" + detail::to_lower_ascii(domain), 1);
            }
        }
        store_->add(today_(), counts);
    }

    /// Connects `record` to sendgrid_email_sent once (dispatch_uid "sendgrid_backend.metrics").
    Connection connect() {
        return sendgrid_email_sent.connect(
            "sendgrid_backend.metrics", [this](const SendgridBackend&, const EmailMessage& message,
                                               bool fail_flag) { record(message, fail_flag); });
    }

    /// The metrics of `date` ("YYYY-MM-DD").
    EmailMetrics get_email_metrics(const std::string& date) const {
        EmailMetrics metrics;
        metrics.date = date;
        for (const auto& [name, count] : store_->counters(date)) {
            if (name == "sent") {
                metrics.sent = count;
            } else if (name == "failed") {
                metrics.failed = count;
            } else if (name.rfind("reason:", 0) == 0) {
                metrics.failure_reasons[name.substr(7)] = count;
            } else if (name.rfind("template:", 0) == 0) {
                metrics.templates[name.substr(9)] = count;
            } else if (name.rfind("domain:", 0) == 0) {
                metrics.recipient_domains[name.substr(7)] = count;
            }
        }
        return metrics;
    }

  private:
    std::shared_ptr<MetricsStore> store_;
    std::function<std::string()> today_;
};

SENDGRID_BACKEND_NAMESPACE_END
