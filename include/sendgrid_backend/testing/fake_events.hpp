#pragma once

/// @file
/// What FakeSendgridServer plays after a 202: which Event Webhook events each recipient gets
/// (`EventRule`, the built-in rules) and the JSON of one event as SendGrid posts it
/// (`detail::make_event`). Needs nothing beyond nlohmann/json.
///
/// @code
/// FakeServerOptions options;
/// options.event_rules.push_back(EventRule({"processed", "deferred", "delivered"})
///                                   .for_recipient("slow@example.com"));
/// @endcode

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// The event names a rule or `POST /__events` may ask for. "blocked" is SendGrid's bounce
/// event with `"type": "blocked"`; every other name is the event's own.
inline constexpr std::string_view fake_event_names[] = {
    "processed", "delivered", "deferred",   "bounce",      "blocked",          "dropped",
    "open",      "click",     "spamreport", "unsubscribe", "group_unsubscribe"};

inline bool is_fake_event_name(std::string_view name) noexcept {
    for (const auto known : fake_event_names) {
        if (known == name) return true;
    }
    return false;
}

/// One accepted recipient as a rule sees it.
struct EventRecipient {
    std::string email;
    const nlohmann::json& payload;  ///< the whole mail/send body
};

/// The events one recipient gets, in order, for the recipients `matches` accepts (all when
/// empty). Rules are tried in the order given; the first that matches wins, then the built-in
/// ones (see `detail::built_in_events`).
struct EventRule {
    std::vector<std::string> events;
    std::function<bool(const EventRecipient&)> matches;

    EventRule() = default;
    EventRule(std::initializer_list<std::string> events_) : events(events_) {}
    explicit EventRule(std::vector<std::string> events_) : events(std::move(events_)) {}

    /// Only for `address` (any case), or every address of a domain given as "*@example.com".
    EventRule& for_recipient(std::string address) {
        matches = [address = sendgrid_backend::detail::to_lower_ascii(address)](
                      const EventRecipient& recipient) {
            const std::string email = sendgrid_backend::detail::to_lower_ascii(recipient.email);
            if (address.rfind("*@", 0) == 0) {
                const std::string_view domain = std::string_view(address).substr(1);
                return email.size() > domain.size() &&
                       email.compare(email.size() - domain.size(), domain.size(), domain) == 0;
            }
            return email == address;
        };
        return *this;
    }
    /// Only for the recipients `predicate` accepts (called on the server's thread).
    EventRule& when(std::function<bool(const EventRecipient&)> predicate) {
        matches = std::move(predicate);
        return *this;
    }
};

namespace detail {

/// SendGrid's test-address habit: the local part says what happens (bounce@, blocked@,
/// dropped@, deferred@, spamreport@); anyone else is processed and delivered.
inline std::vector<std::string> built_in_events(std::string_view email) {
    const std::string lower = sendgrid_backend::detail::to_lower_ascii(email);
    const std::string local = lower.substr(0, lower.find('@'));
    if (local == "bounce") return {"processed", "bounce"};
    if (local == "blocked") return {"processed", "blocked"};
    if (local == "dropped") return {"dropped"};
    if (local == "deferred") return {"processed", "deferred", "delivered"};
    if (local == "spamreport") return {"processed", "delivered", "spamreport"};
    return {"processed", "delivered"};
}

/// The events for `recipient`: the first matching rule's, else the built-in ones.
inline std::vector<std::string> events_for(const std::vector<EventRule>& rules,
                                           const EventRecipient& recipient) {
    for (const auto& rule : rules) {
        if (!rule.matches || rule.matches(recipient)) return rule.events;
    }
    return built_in_events(recipient.email);
}

/// What an event needs to know about its message and recipient.
struct EventSubject {
    std::string message_id;  ///< the X-Message-Id
    std::string email;
    std::size_t recipient_index = 0;
    nlohmann::json categories = nlohmann::json::array();
    nlohmann::json custom_args = nlohmann::json::object();  ///< mail's, then personalization's
    std::optional<std::int64_t> asm_group_id;
};

/// A fresh sg_event_id: unique within the process, in SendGrid's base64url-looking form.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline std::string next_sg_event_id() {
    static std::atomic<std::uint64_t> counter{0};
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::uint64_t unique = ++counter;
    std::uint64_t mix = (unique ^ 0x5851f42d4c957f2dULL) * 0xbf58476d1ce4e5b9ULL;
    mix = (mix ^ (mix >> 29)) * 0x94d049bb133111ebULL;
    std::string id;
    for (int i = 0; i < 11; ++i, mix >>= 5) id += alphabet[mix & 63];
    for (int i = 0; i < 11; ++i, unique >>= 6) id += alphabet[unique & 63];
    return id;
}

/// The event `name` for `subject` as SendGrid posts it: the common fields, the type's own,
/// and every custom_arg at the top level (never over a field SendGrid defines).
inline nlohmann::json make_event(std::string_view name, const EventSubject& subject,
                                 std::int64_t timestamp, const std::string& url = {}) {
    const bool blocked = name == "blocked";
    nlohmann::json event = {
        {"email", subject.email},
        {"timestamp", timestamp},
        {"smtp-id", "<" + subject.message_id + "@ismtpd0001p1iad2.sendgrid.net>"},
        {"event", blocked ? std::string("bounce") : std::string(name)},
        {"sg_event_id", next_sg_event_id()},
        {"sg_message_id", subject.message_id + ".filterdrecv-fake-" +
                              std::to_string(subject.recipient_index) + ".0"},
    };
    if (subject.categories.size() == 1) {
        event["category"] = subject.categories[0];
    } else if (!subject.categories.empty()) {
        event["category"] = subject.categories;
    }
    if (name == "delivered") {
        event["response"] = "250 2.0.0 OK";
        event["ip"] = "127.0.0.1";
        event["tls"] = 1;
    } else if (name == "deferred") {
        event["response"] = "421 4.7.0 Try again later";
        event["attempt"] = "1";  // a string, as SendGrid sends it
    } else if (name == "bounce") {
        event["type"] = "bounce";
        event["status"] = "5.1.1";
        event["reason"] = "550 5.1.1 The email account that you tried to reach does not exist.";
        event["bounce_classification"] = "Invalid Address";
    } else if (blocked) {
        event["type"] = "blocked";
        event["status"] = "5.7.1";
        event["reason"] = "550 5.7.1 Message rejected by the receiving server's policy";
        event["bounce_classification"] = "Content";
    } else if (name == "dropped") {
        event["reason"] = "Bounced Address";
        event["status"] = "5.0.0";
    } else if (name == "open") {
        event["useragent"] = "Mozilla/5.0 (fake-sendgrid)";
        event["ip"] = "127.0.0.1";
        event["sg_machine_open"] = false;
    } else if (name == "click") {
        event["useragent"] = "Mozilla/5.0 (fake-sendgrid)";
        event["ip"] = "127.0.0.1";
        event["url"] = url.empty() ? std::string("https://example.com/") : url;
        event["url_offset"] = {{"index", 0}, {"type", "html"}};
    } else if (name == "group_unsubscribe") {
        event["useragent"] = "Mozilla/5.0 (fake-sendgrid)";
        event["ip"] = "127.0.0.1";
        if (subject.asm_group_id) event["asm_group_id"] = *subject.asm_group_id;
    }
    if (subject.asm_group_id && name != "group_unsubscribe") {
        event["asm_group_id"] = *subject.asm_group_id;
    }
    for (const auto& [key, value] : subject.custom_args.items()) {
        if (!event.contains(key)) event[key] = value;
    }
    return event;
}

/// The status a recipient shows after `event` (its "type" for a bounce: bounce or blocked).
inline std::string status_after(const nlohmann::json& event) {
    const std::string name = event.value("event", "");
    if (name == "bounce") return event.value("type", "bounce");
    return name;
}

}  // namespace detail
}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
