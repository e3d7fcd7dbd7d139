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
#include "sendgrid_backend/detail/json/event_keys.hpp"
#include "sendgrid_backend/detail/json/tree.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
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

/// A text field's value: a string as it is, nothing for null, any other JSON as its text.
inline std::string text_of(const nlohmann::json& value) {
    if (value.is_string()) return value.get_ref<const std::string&>();
    if (value.is_null()) return "";
    return value.dump();
}

/// The same for `object[key]`; nothing when it is absent.
inline std::string json_text(const nlohmann::json& object, const char* key) {
    auto found = object.find(key);
    return found == object.end() ? std::string() : text_of(*found);
}

/// An integer field's value; nullopt when it is not a number or outside [min, max] (a number
/// from the network is refused rather than wrapped or converted with undefined behaviour).
inline std::optional<std::int64_t> integer_of(
    const nlohmann::json& value, std::int64_t min = std::numeric_limits<std::int64_t>::min(),
    std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    std::optional<std::int64_t> result;
    if (value.is_number_unsigned()) {
        const auto number = value.get<std::uint64_t>();
        if (number <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            result = static_cast<std::int64_t>(number);
        }
    } else if (value.is_number_integer()) {
        result = value.get<std::int64_t>();
    } else if (value.is_number_float()) {
        // In range, the conversion truncates; out of it (1e300), it would be undefined.
        const double number = value.get<double>();
        if (number >= -9223372036854775808.0 && number < 9223372036854775808.0) {
            result = static_cast<std::int64_t>(number);
        }
    } else if (value.is_string()) {  // SendGrid sends some numbers as strings ("attempt": "1")
        result = parse_decimal(value.get_ref<const std::string&>());
    }
    if (result && (*result < min || *result > max)) return std::nullopt;
    return result;
}

/// The same for an int field that cannot be negative (attempt, url_offset.index).
inline std::optional<int> count_of(const nlohmann::json& value) {
    if (auto number = integer_of(value, 0, std::numeric_limits<int>::max())) {
        return static_cast<int>(*number);
    }
    return std::nullopt;
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

inline void read_categories(const nlohmann::json& value, std::vector<std::string>& categories) {
    if (value.is_array()) {
        categories.reserve(value.size());
        for (const auto& item : value) {  // null is "null" here, unlike in a text field
            categories.push_back(item.is_string() ? item.get_ref<const std::string&>()
                                                  : item.dump());
        }
    } else if (value.is_string()) {
        categories.push_back(value.get_ref<const std::string&>());
    }
}

/// Reads `object` (one event) in one pass over its keys, then keeps it as `raw`: moved, since a
/// batch's events are parsed once and the tree is not needed afterwards.
inline WebhookEvent parse_event(nlohmann::json&& object) {
    WebhookEvent event;
    auto& custom_args = event.custom_args.get_ref<nlohmann::json::object_t&>();
    for (const auto& [key, value] : object.get_ref<const nlohmann::json::object_t&>()) {
        switch (event_key(key)) {
            case EventKey::custom:  // keys come in order: each one goes at the end
                custom_args.emplace_hint(custom_args.end(), key, value);
                break;
            case EventKey::documented:
                break;
            case EventKey::email:
                event.email = text_of(value);
                break;
            case EventKey::timestamp:
                event.timestamp = integer_of(value).value_or(0);
                break;
            case EventKey::event:
                event.event = text_of(value);
                break;
            case EventKey::smtp_id:
                event.smtp_id = text_of(value);
                break;
            case EventKey::sg_event_id:
                event.sg_event_id = text_of(value);
                break;
            case EventKey::sg_message_id:
                event.sg_message_id = text_of(value);
                break;
            case EventKey::category:
                read_categories(value, event.categories);
                break;
            case EventKey::ip:
                event.ip = text_of(value);
                break;
            case EventKey::useragent:
                event.useragent = text_of(value);
                break;
            case EventKey::tls:
                if (value.is_boolean()) event.tls = value.get<bool>();
                if (value.is_number()) event.tls = value.get<double>() != 0;
                break;
            case EventKey::reason:
                event.reason = text_of(value);
                break;
            case EventKey::status:
                event.status = text_of(value);
                break;
            case EventKey::type:
                event.bounce_type = text_of(value);
                break;
            case EventKey::attempt:
                event.attempt = count_of(value);
                break;
            case EventKey::url:
                event.url = text_of(value);
                break;
            case EventKey::url_offset:
                if (value.is_object()) {
                    if (auto index = value.find("index"); index != value.end()) {
                        event.url_offset_index = count_of(*index);
                    }
                    event.url_offset_type = json_text(value, "type");
                }
                break;
            case EventKey::asm_group_id:
                event.asm_group_id = integer_of(value);
                break;
            case EventKey::marketing_campaign_id:
                event.marketing_campaign_id = integer_of(value);
                break;
            case EventKey::marketing_campaign_name:
                event.marketing_campaign_name = text_of(value);
                break;
            case EventKey::marketing_campaign_version:
                event.marketing_campaign_version = text_of(value);
                break;
            case EventKey::marketing_campaign_split_id:
                event.marketing_campaign_split_id = text_of(value);
                break;
        }
    }
    event.type = event_type_from(event.event);
    event.raw = std::move(object);
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
        if (ids_.find(id) != ids_.end()) return false;
        if (capacity_ == 0) return true;
        if (ring_.size() < capacity_) {
            ring_.emplace_back(id);
            ids_.insert(ring_.back());
            return true;
        }
        // Full: the oldest id makes room. Its string and its set node are reused, so that a
        // receiver past its first `capacity` events allocates nothing here.
        std::string& oldest = ring_[oldest_];
        auto node = ids_.extract(oldest);
        oldest.assign(id.data(), id.size());
        if (node.empty()) {  // only after an allocation failed half-way through a call
            ids_.insert(oldest);
        } else {
            node.value() = oldest;
            ids_.insert(std::move(node));
        }
        oldest_ = (oldest_ + 1) % capacity_;
        return true;
    }

  private:
    std::size_t capacity_;
    std::mutex mutex_;
    // The ids in the order they came; ids_ views them. A deque never moves its elements when it
    // grows, so the views stay valid (a vector would move short strings' bytes along with them).
    std::deque<std::string> ring_;
    std::size_t oldest_ = 0;  ///< once ring_ is full, the slot the next new id takes
    std::unordered_set<std::string_view> ids_;
};

/// Parses the POSTed JSON array into events (no signature check).
/// @throws InvalidWebhookBody (field "body" or `body[i]`) when the body is not a JSON array of
/// objects.
inline std::vector<WebhookEvent> parse_webhook_events(std::string_view body) {
    std::string problem;
    nlohmann::json json = detail::read_json_text(body, &problem);
    if (json.is_discarded()) throw InvalidWebhookBody("body", problem);
    if (!json.is_array()) throw InvalidWebhookBody("body", "is not a JSON array of events");
    auto& items = json.get_ref<nlohmann::json::array_t&>();
    std::vector<WebhookEvent> events;
    events.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_object()) {
            throw InvalidWebhookBody("body[" + std::to_string(i) + "]", "is not an event object");
        }
        events.push_back(detail::parse_event(std::move(items[i])));
    }
    return events;
}

/// Why a request was not accepted, or `none`.
enum class WebhookRefusal {
    none,
    body_too_large,
    missing_signature,
    bad_timestamp,
    stale_timestamp,   ///< older than the tolerance: a replay, or a very slow delivery
    future_timestamp,  ///< newer than the tolerance: a wrong clock somewhere
    bad_signature_encoding,
    signature_mismatch,
    malformed_body,
    /// The status store (`WebhookOptions::statuses`) failed: answered 503, so that SendGrid
    /// sends the batch again, and nothing of it was emitted. As a rule nothing was applied
    /// either; but when the connection to a shared store broke after the store applied the
    /// batch and stayed broken through the store's tries (RedisStatusStore::apply), the facts
    /// come back as applied before, and their status changes are not signalled.
    status_store_failed,
};

/// A short name for a WebhookRefusal, e.g. "stale_timestamp"; "none" for none.
constexpr const char* to_string(WebhookRefusal refusal) noexcept {
    switch (refusal) {
        case WebhookRefusal::none:
            return "none";
        case WebhookRefusal::body_too_large:
            return "body_too_large";
        case WebhookRefusal::missing_signature:
            return "missing_signature";
        case WebhookRefusal::bad_timestamp:
            return "bad_timestamp";
        case WebhookRefusal::stale_timestamp:
            return "stale_timestamp";
        case WebhookRefusal::future_timestamp:
            return "future_timestamp";
        case WebhookRefusal::bad_signature_encoding:
            return "bad_signature_encoding";
        case WebhookRefusal::signature_mismatch:
            return "signature_mismatch";
        case WebhookRefusal::malformed_body:
            return "malformed_body";
        case WebhookRefusal::status_store_failed:
            return "status_store_failed";
    }
    return "none";
}

/// What to answer and what was received.
struct WebhookResult {
    int http_status = 200;  ///< 200, or 400 / 401 / 413 / 503 when refused
    WebhookRefusal refusal = WebhookRefusal::none;
    std::string refusal_reason;        ///< one line, empty when accepted
    std::vector<WebhookEvent> events;  ///< the new events, in the order received
    std::size_t duplicates = 0;        ///< events dropped because their sg_event_id was seen before
    /// Events that changed a tracked message's record (`WebhookOptions::statuses`): new facts,
    /// copies and untracked events left out.
    std::size_t statuses_applied = 0;
    /// The signature was checked and matched (false when accepted with `allow_unsigned`).
    bool verified = false;

    bool accepted() const noexcept { return refusal == WebhookRefusal::none; }
};

/// Sent once by every `EventWebhook::handle` call (webhook.hpp), accepted or refused, after the
/// request's events were sent on `sendgrid_event_received`, on the same thread: what a request
/// counter or an access log needs. A handler that throws is reported to
/// `WebhookOptions::on_result_handler_error` (default: stderr); the answer stands.
inline BasicSignal<void(const EventWebhook&, const WebhookResult&)> sendgrid_webhook_handled;

/// Sent by `EventWebhook::handle` (webhook.hpp) for each new event of a verified request, on the
/// thread that handles the request. Declared here, with the events, so that programs that only
/// send mail do not instantiate it.
inline BasicSignal<void(const EventWebhook&, const WebhookEvent&)> sendgrid_event_received;

SENDGRID_BACKEND_NAMESPACE_END
