#pragma once

/// @file
/// The messages FakeSendgridServer accepted, as `GET /__messages` shows them: each with its
/// recipients, the events still to fire for each and the events fired (`StoredMessage`), kept
/// in a bounded store that drops the oldest (`detail::MessageStore`, not thread-safe: the
/// server holds its lock around it).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/testing/fake_events.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// One recipient of an accepted message.
struct StoredRecipient {
    detail::EventSubject subject;      ///< its email and what its events carry
    std::vector<std::string> planned;  ///< the rule's events not fired yet
    std::string status;                ///< after the last event fired; empty before
    /// When its events are due (unix seconds): its personalization's send_at, else the mail's.
    std::optional<std::int64_t> send_at;
};

/// One accepted message (one mail/send request answered 202).
struct StoredMessage {
    std::string message_id;
    std::int64_t received_at = 0;         ///< unix seconds
    std::optional<std::int64_t> send_at;  ///< unix seconds
    std::string batch_id;                 ///< empty: none
    nlohmann::json payload;               ///< the mail/send body
    HttpHeaders headers;                  ///< of the request
    std::vector<StoredRecipient> recipients;
    nlohmann::json events = nlohmann::json::array();  ///< fired, as posted, in firing order
    bool cancelled = false;  ///< its batch was cancelled before its events fired

    bool waiting() const noexcept {
        for (const auto& recipient : recipients) {
            if (!recipient.planned.empty()) return true;
        }
        return false;
    }
};

namespace detail {

/// The recipients of a mail/send body, one per address of each personalization, with what
/// their events carry: categories, custom_args (the personalization's over the mail's) and
/// the unsubscribe group.
inline std::vector<StoredRecipient> recipients_of(const nlohmann::json& payload,
                                                  const std::string& message_id,
                                                  const std::vector<EventRule>& rules) {
    std::vector<StoredRecipient> recipients;
    const nlohmann::json categories =
        payload.contains("categories") && payload["categories"].is_array()
            ? payload["categories"]
            : nlohmann::json::array();
    std::optional<std::int64_t> group;
    if (payload.contains("asm") && payload["asm"].is_object() &&
        payload["asm"].contains("group_id") && payload["asm"]["group_id"].is_number_integer()) {
        group = payload["asm"]["group_id"].get<std::int64_t>();
    }
    const nlohmann::json mail_args =
        payload.contains("custom_args") && payload["custom_args"].is_object()
            ? payload["custom_args"]
            : nlohmann::json::object();
    std::optional<std::int64_t> mail_send_at;
    if (payload.contains("send_at") && payload["send_at"].is_number_integer()) {
        mail_send_at = payload["send_at"].get<std::int64_t>();
    }
    for (const auto& personalization : payload.value("personalizations", nlohmann::json())) {
        std::optional<std::int64_t> send_at = mail_send_at;
        if (personalization.contains("send_at") && personalization["send_at"].is_number_integer()) {
            send_at = personalization["send_at"].get<std::int64_t>();
        }
        nlohmann::json args = mail_args;
        if (personalization.contains("custom_args") && personalization["custom_args"].is_object()) {
            args.update(personalization["custom_args"]);
        }
        for (const char* list : {"to", "cc", "bcc"}) {
            if (!personalization.contains(list)) continue;
            for (const auto& address : personalization[list]) {
                StoredRecipient recipient;
                recipient.subject.message_id = message_id;
                recipient.subject.email = address.value("email", "");
                recipient.subject.recipient_index = recipients.size();
                recipient.subject.categories = categories;
                recipient.subject.custom_args = args;
                recipient.subject.asm_group_id = group;
                recipient.planned = events_for(rules, {recipient.subject.email, payload});
                recipient.send_at = send_at;
                recipients.push_back(std::move(recipient));
            }
        }
    }
    return recipients;
}

inline std::string subject_of(const nlohmann::json& payload) {
    if (payload.contains("subject") && payload["subject"].is_string()) {
        return payload["subject"].get<std::string>();
    }
    for (const auto& personalization : payload.value("personalizations", nlohmann::json())) {
        if (personalization.contains("subject") && personalization["subject"].is_string()) {
            return personalization["subject"].get<std::string>();
        }
    }
    return {};
}

/// The first content part of `type`, or null.
inline nlohmann::json content_of(const nlohmann::json& payload, std::string_view type) {
    for (const auto& part : payload.value("content", nlohmann::json::array())) {
        if (part.is_object() && part.value("type", "") == type && part.contains("value")) {
            return part["value"];
        }
    }
    return nullptr;
}

/// An attachment's bytes: its content decoded (as sent when it is not valid base64).
inline std::string attachment_bytes(const nlohmann::json& attachment) {
    const std::string content = attachment.value("content", "");
    const auto decoded = sendgrid_backend::detail::base64_decode(content);
    return decoded ? *decoded : content;
}

/// The accepted messages, oldest first, at most `max_messages` of them (none: unbounded).
class MessageStore {
  public:
    /// Says whether a batch was cancelled (the scheduled sends decide).
    using CancelledBatch = std::function<bool(const std::string& batch_id)>;

    explicit MessageStore(std::optional<std::size_t> max_messages = std::nullopt)
        : max_messages_(max_messages) {}

    void add(StoredMessage message) {
        messages_.push_back(std::move(message));
        if (max_messages_) {
            while (messages_.size() > *max_messages_) {
                messages_.pop_front();
                ++dropped_;
            }
        }
    }

    StoredMessage* find(std::string_view message_id) {
        for (auto& message : messages_) {
            if (message.message_id == message_id) return &message;
        }
        return nullptr;
    }

    const StoredMessage* find(std::string_view message_id) const {
        return const_cast<MessageStore*>(this)->find(message_id);
    }

    std::deque<StoredMessage>& messages() noexcept { return messages_; }

    void clear() {
        messages_.clear();
        dropped_ = 0;
    }

    /// What `GET /__messages?q=` answers: newest first; `query` (any case) matches a
    /// recipient, the subject or a category.
    nlohmann::json list_json(std::string_view query, const CancelledBatch& cancelled) const {
        const std::string needle = sendgrid_backend::detail::to_lower_ascii(query);
        auto found_in = [&needle](const std::string& text) {
            return sendgrid_backend::detail::to_lower_ascii(text).find(needle) != std::string::npos;
        };
        nlohmann::json list = nlohmann::json::array();
        for (auto it = messages_.rbegin(); it != messages_.rend(); ++it) {
            bool matches = needle.empty() || found_in(subject_of(it->payload));
            for (const auto& recipient : it->recipients) {
                matches = matches || found_in(recipient.subject.email);
            }
            for (const auto& category : it->recipients.empty()
                                            ? nlohmann::json::array()
                                            : it->recipients.front().subject.categories) {
                matches =
                    matches || (category.is_string() && found_in(category.get<std::string>()));
            }
            if (matches) list.push_back(summary_json(*it, cancelled));
        }
        return {{"messages", list},
                {"dropped", dropped_},
                {"max_messages", max_messages_ ? nlohmann::json(*max_messages_) : nullptr}};
    }

    /// M of the contract: the message's summary, recipients' statuses.
    static nlohmann::json summary_json(const StoredMessage& message,
                                       const CancelledBatch& cancelled) {
        const bool batch_cancelled =
            message.cancelled ||
            (!message.batch_id.empty() && message.waiting() && cancelled(message.batch_id));
        nlohmann::json recipients = nlohmann::json::array();
        for (const auto& recipient : message.recipients) {
            std::string status = recipient.status;
            if (status.empty()) {
                status = batch_cancelled             ? "cancelled"
                         : recipient.planned.empty() ? "accepted"
                                                     : "scheduled";
            }
            recipients.push_back({{"email", recipient.subject.email}, {"status", status}});
        }
        const auto& payload = message.payload;
        nlohmann::json summary = {
            {"message_id", message.message_id},
            {"received_at", message.received_at},
            {"subject", subject_of(payload)},
            {"from", payload.contains("from") ? payload["from"].value("email", "") : ""},
            {"categories", payload.value("categories", nlohmann::json::array())},
            {"recipients", recipients},
        };
        if (message.send_at) summary["send_at"] = *message.send_at;
        if (!message.batch_id.empty()) summary["batch_id"] = message.batch_id;
        return summary;
    }

    /// `GET /__messages/{id}`: the summary plus the bodies, the request (secrets hidden,
    /// attachments' content replaced by its size), the attachments and the events.
    static nlohmann::json detail_json(const StoredMessage& message,
                                      const CancelledBatch& cancelled) {
        nlohmann::json detail = summary_json(message, cancelled);
        detail["html"] = content_of(message.payload, "text/html");
        detail["text"] = content_of(message.payload, "text/plain");
        nlohmann::json headers = nlohmann::json::object();
        for (const auto& [name, value] : message.headers) {
            headers[name] = sendgrid_backend::detail::iequals(name, "Authorization")
                                ? std::string("Bearer ***")
                                : value;
        }
        nlohmann::json payload = message.payload;
        nlohmann::json attachments = nlohmann::json::array();
        if (payload.contains("attachments") && payload["attachments"].is_array()) {
            std::size_t index = 0;
            for (auto& attachment : payload["attachments"]) {
                const std::size_t size = attachment_bytes(attachment).size();
                attachments.push_back({{"index", index++},
                                       {"filename", attachment.value("filename", "")},
                                       {"type", attachment.value("type", "")},
                                       {"size", size}});
                attachment["content"] = size;
            }
        }
        detail["request"] = {{"headers", headers}, {"payload", payload}};
        detail["attachments"] = attachments;
        detail["events"] = message.events;
        return detail;
    }

  private:
    std::deque<StoredMessage> messages_;
    std::optional<std::size_t> max_messages_;
    std::size_t dropped_ = 0;
};

}  // namespace detail
}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
