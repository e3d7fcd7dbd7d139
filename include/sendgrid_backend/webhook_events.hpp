#pragma once

/// @file
/// The Event Webhook's events: what SendGrid POSTs about each message after it was accepted
/// (processed, delivered, bounce, open, ...), parsed into typed `WebhookEvent`s, with
/// de-duplication by `sg_event_id` and `belongs_to` for matching events to sent messages.
/// Needs nlohmann/json only; verifying SendGrid's signature is webhook.hpp's job (OpenSSL).
///
/// @code
/// for (const auto& event : sendgrid_backend::parse_webhook_events(body)) {
///     if (event.type == sendgrid_backend::EventType::bounce) mark_bounced(event.email);
/// }
/// @endcode

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json_parse.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/signals.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// The kinds of event SendGrid reports; `unknown` keeps any other kind (never dropped).
enum class EventType {
    processed,
    dropped,
    delivered,
    deferred,
    bounce,
    open,
    click,
    spamreport,
    unsubscribe,
    group_unsubscribe,
    group_resubscribe,
    unknown,
};

/// The event name SendGrid uses, e.g. "group_unsubscribe"; "unknown" for unknown.
constexpr const char* to_string(EventType type) noexcept {
    switch (type) {
        case EventType::processed:
            return "processed";
        case EventType::dropped:
            return "dropped";
        case EventType::delivered:
            return "delivered";
        case EventType::deferred:
            return "deferred";
        case EventType::bounce:
            return "bounce";
        case EventType::open:
            return "open";
        case EventType::click:
            return "click";
        case EventType::spamreport:
            return "spamreport";
        case EventType::unsubscribe:
            return "unsubscribe";
        case EventType::group_unsubscribe:
            return "group_unsubscribe";
        case EventType::group_resubscribe:
            return "group_resubscribe";
        case EventType::unknown:
            return "unknown";
    }
    return "unknown";
}

/// One event of the POSTed array. Fields SendGrid did not send are empty / unset.
struct WebhookEvent {
    EventType type = EventType::unknown;
    std::string event;  ///< the name as sent, also for unknown types
    std::string email;
    std::int64_t timestamp = 0;
    std::string smtp_id;  ///< "smtp-id"
    std::string sg_event_id;
    std::string sg_message_id;
    std::vector<std::string> categories;  ///< "category", a string or an array
    std::string ip;
    std::string useragent;
    std::optional<bool> tls;
    std::string reason;          ///< dropped, bounce, deferred
    std::string status;          ///< bounce: the SMTP status, e.g. "5.1.1"
    std::string bounce_type;     ///< bounce: "bounce" or "blocked" (SendGrid's "type")
    std::optional<int> attempt;  ///< deferred
    std::string url;             ///< click
    std::optional<int> url_offset_index;
    std::string url_offset_type;
    std::optional<std::int64_t> asm_group_id;  ///< group_unsubscribe, group_resubscribe
    std::optional<std::int64_t> marketing_campaign_id;
    std::string marketing_campaign_name;
    std::string marketing_campaign_version;
    std::string marketing_campaign_split_id;
    /// Top-level keys SendGrid does not define: the custom_args sent with the message.
    nlohmann::json custom_args = nlohmann::json::object();
    /// The event exactly as received.
    nlohmann::json raw;
};

/// Whether `event` is about the message SendGrid accepted with X-Message-Id `message_id`:
/// SendGrid's sg_message_id is that id followed by "." and a suffix of its own.
inline bool belongs_to(const WebhookEvent& event, std::string_view message_id) noexcept {
    const std::string_view id = event.sg_message_id;
    if (message_id.empty() || id.size() < message_id.size()) return false;
    return id.substr(0, message_id.size()) == message_id &&
           (id.size() == message_id.size() || id[message_id.size()] == '.');
}

/// The same for a message sent with SendgridBackend (its recorded outcome.message_id).
inline bool belongs_to(const WebhookEvent& event, const EmailMessage& message) noexcept {
    return belongs_to(event, message.outcome.message_id);
}

namespace detail {

inline std::string json_text(const nlohmann::json& object, const char* key) {
    auto found = object.find(key);
    if (found == object.end() || found->is_null()) return "";
    if (found->is_string()) return found->get<std::string>();
    return found->dump();
}

/// An integer field; nullopt when it is absent, not a number, or outside [min, max] (a number
/// from the network is refused rather than wrapped or converted with undefined behaviour).
inline std::optional<std::int64_t> json_integer(
    const nlohmann::json& object, const char* key,
    std::int64_t min = std::numeric_limits<std::int64_t>::min(),
    std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    auto found = object.find(key);
    if (found == object.end()) return std::nullopt;
    std::optional<std::int64_t> value;
    if (found->is_number_unsigned()) {
        const auto number = found->get<std::uint64_t>();
        if (number <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            value = static_cast<std::int64_t>(number);
        }
    } else if (found->is_number_integer()) {
        value = found->get<std::int64_t>();
    } else if (found->is_number_float()) {
        // In range, the conversion truncates; out of it (1e300), it would be undefined.
        const double number = found->get<double>();
        if (number >= -9223372036854775808.0 && number < 9223372036854775808.0) {
            value = static_cast<std::int64_t>(number);
        }
    } else if (found->is_string()) {  // SendGrid sends some numbers as strings ("attempt": "1")
        value = parse_decimal(found->get_ref<const std::string&>());
    }
    if (value && (*value < min || *value > max)) return std::nullopt;
    return value;
}

inline EventType event_type_from(std::string_view name) noexcept {
    for (EventType type :
         {EventType::processed, EventType::dropped, EventType::delivered, EventType::deferred,
          EventType::bounce, EventType::open, EventType::click, EventType::spamreport,
          EventType::unsubscribe, EventType::group_unsubscribe, EventType::group_resubscribe}) {
        if (name == to_string(type)) return type;
    }
    return EventType::unknown;
}

inline bool is_documented_event_key(std::string_view key) noexcept {
    static constexpr std::string_view keys[] = {"email",
                                                "timestamp",
                                                "event",
                                                "smtp-id",
                                                "sg_event_id",
                                                "sg_message_id",
                                                "category",
                                                "ip",
                                                "useragent",
                                                "tls",
                                                "cert_err",
                                                "reason",
                                                "status",
                                                "type",
                                                "attempt",
                                                "url",
                                                "url_offset",
                                                "asm_group_id",
                                                "marketing_campaign_id",
                                                "marketing_campaign_name",
                                                "marketing_campaign_version",
                                                "marketing_campaign_split_id",
                                                "response",
                                                "send_at",
                                                "sg_machine_open",
                                                "bounce_classification",
                                                "pool",
                                                "sg_template_id",
                                                "sg_template_name",
                                                "sg_content_type",
                                                "mc_stats",
                                                "phase_id",
                                                "singlesend_id",
                                                "singlesend_name",
                                                "template_id",
                                                "template_name",
                                                "template_version_id",
                                                "template_hash",
                                                "post_type",
                                                "newsletter",
                                                "sg_user_id",
                                                "unique_args"};
    for (auto documented : keys) {
        if (key == documented) return true;
    }
    return false;
}

inline WebhookEvent parse_event(const nlohmann::json& object) {
    WebhookEvent event;
    event.raw = object;
    event.event = json_text(object, "event");
    event.type = event_type_from(event.event);
    event.email = json_text(object, "email");
    event.timestamp = json_integer(object, "timestamp").value_or(0);
    event.smtp_id = json_text(object, "smtp-id");
    event.sg_event_id = json_text(object, "sg_event_id");
    event.sg_message_id = json_text(object, "sg_message_id");
    if (auto category = object.find("category"); category != object.end()) {
        if (category->is_array()) {
            for (const auto& item : *category) {
                event.categories.push_back(item.is_string() ? item.get<std::string>()
                                                            : item.dump());
            }
        } else if (category->is_string()) {
            event.categories.push_back(category->get<std::string>());
        }
    }
    event.ip = json_text(object, "ip");
    event.useragent = json_text(object, "useragent");
    if (auto tls = object.find("tls"); tls != object.end()) {
        if (tls->is_boolean()) event.tls = tls->get<bool>();
        if (tls->is_number()) event.tls = tls->get<double>() != 0;
    }
    event.reason = json_text(object, "reason");
    event.status = json_text(object, "status");
    event.bounce_type = json_text(object, "type");
    if (auto attempt = json_integer(object, "attempt", 0, std::numeric_limits<int>::max())) {
        event.attempt = static_cast<int>(*attempt);
    }
    event.url = json_text(object, "url");
    if (auto offset = object.find("url_offset"); offset != object.end() && offset->is_object()) {
        if (auto index = json_integer(*offset, "index", 0, std::numeric_limits<int>::max())) {
            event.url_offset_index = static_cast<int>(*index);
        }
        event.url_offset_type = json_text(*offset, "type");
    }
    event.asm_group_id = json_integer(object, "asm_group_id");
    event.marketing_campaign_id = json_integer(object, "marketing_campaign_id");
    event.marketing_campaign_name = json_text(object, "marketing_campaign_name");
    event.marketing_campaign_version = json_text(object, "marketing_campaign_version");
    event.marketing_campaign_split_id = json_text(object, "marketing_campaign_split_id");
    for (const auto& [key, value] : object.items()) {
        if (!is_documented_event_key(key)) event.custom_args[key] = value;
    }
    return event;
}

}  // namespace detail

/// Remembers which `sg_event_id`s were seen, so SendGrid's retries (for up to 24 hours) are not
/// handled twice. Implement it over Redis or a database table to share it between processes.
class SeenEventIds {
  public:
    virtual ~SeenEventIds() = default;
    /// Records `id`; returns true the first time an id is seen. Must be thread-safe.
    virtual bool first_time(std::string_view id) = 0;
};

/// An in-process SeenEventIds holding the most recent `capacity` ids.
class InMemorySeenEventIds : public SeenEventIds {
  public:
    explicit InMemorySeenEventIds(std::size_t capacity = 100'000) : capacity_(capacity) {}

    bool first_time(std::string_view id) override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string key(id);
        if (!ids_.insert(key).second) return false;
        order_.push_back(std::move(key));
        if (order_.size() > capacity_) {
            ids_.erase(order_.front());
            order_.pop_front();
        }
        return true;
    }

  private:
    std::size_t capacity_;
    std::mutex mutex_;
    std::unordered_set<std::string> ids_;
    std::deque<std::string> order_;
};

/// Parses the POSTed JSON array into events (no signature check).
/// @throws InvalidMessage (field "body") when the body is not a JSON array of objects.
inline std::vector<WebhookEvent> parse_webhook_events(std::string_view body) {
    std::string problem;
    const nlohmann::json json = detail::parse_json_text(body, &problem);
    if (json.is_discarded()) throw InvalidMessage("body", problem);
    if (!json.is_array()) throw InvalidMessage("body", "is not a JSON array of events");
    std::vector<WebhookEvent> events;
    events.reserve(json.size());
    for (std::size_t i = 0; i < json.size(); ++i) {
        if (!json[i].is_object()) {
            throw InvalidMessage("body[" + std::to_string(i) + "]", "is not an event object");
        }
        events.push_back(detail::parse_event(json[i]));
    }
    return events;
}

/// Sent by `EventWebhook::handle` (webhook.hpp) for each new event of a verified request, on the
/// thread that handles the request. Declared here, with the events, so that programs that only
/// send mail do not instantiate it.
inline BasicSignal<void(const EventWebhook&, const WebhookEvent&)> sendgrid_event_received;

SENDGRID_BACKEND_NAMESPACE_END
