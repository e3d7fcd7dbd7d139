#pragma once

/// @file
/// What became of a message, per recipient: `DeliveryState` (one order, from queued to dropped),
/// `RecipientState` (the state and which engagements happened: what a change is),
/// `RecipientStatus` (the whole record) and `MessageStatus` (the send and every recipient).
/// Plain types; the rules that fill them are status/rules.hpp.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where a message (the send) or a recipient (the delivery) is. The order is the rules' order:
/// of all the states the facts seen imply, the greatest is the status, whatever the order the
/// facts came in (status/rules.hpp).
enum class DeliveryState {
    none,       ///< nothing known
    queued,     ///< in the Redis queue
    sending,    ///< a worker took it
    failed,     ///< not accepted: rejected, invalid, cancelled or not sent
    unknown,    ///< sent, no answer: SendGrid may have accepted it
    accepted,   ///< SendGrid's 202 (or any event, which says as much)
    processed,  ///< SendGrid will try to deliver it
    deferred,   ///< the receiving server said "later"; SendGrid retries
    blocked,    ///< a soft bounce (bounce of type "blocked"): a later try may still deliver
    delivered,  ///< the receiving server took it (or an open, click... said so)
    bounced,    ///< a hard bounce: final
    dropped,    ///< SendGrid did not send it (suppressed, invalid): final
};

/// The state's name, e.g. "delivered".
constexpr const char* to_string(DeliveryState state) noexcept {
    switch (state) {
        case DeliveryState::none:
            return "none";
        case DeliveryState::queued:
            return "queued";
        case DeliveryState::sending:
            return "sending";
        case DeliveryState::failed:
            return "failed";
        case DeliveryState::unknown:
            return "unknown";
        case DeliveryState::accepted:
            return "accepted";
        case DeliveryState::processed:
            return "processed";
        case DeliveryState::deferred:
            return "deferred";
        case DeliveryState::blocked:
            return "blocked";
        case DeliveryState::delivered:
            return "delivered";
        case DeliveryState::bounced:
            return "bounced";
        case DeliveryState::dropped:
            return "dropped";
    }
    return "none";
}

/// The engagements a recipient showed, as bits of `RecipientState::engagement`.
enum Engagement : unsigned {
    engaged_open = 1u << 0,
    engaged_click = 1u << 1,
    engaged_spamreport = 1u << 2,
    engaged_unsubscribe = 1u << 3,
    engaged_group_unsubscribe = 1u << 4,
    engaged_group_resubscribe = 1u << 5,
};

/// What `sendgrid_status_changed` reports a change of: the state and the engagements. A second
/// open, another deferral or a duplicate event is no change.
struct RecipientState {
    DeliveryState state = DeliveryState::none;
    unsigned engagement = 0;  ///< `Engagement` bits

    bool has(Engagement bit) const noexcept { return (engagement & bit) != 0; }
    friend bool operator==(const RecipientState& a, const RecipientState& b) noexcept {
        return a.state == b.state && a.engagement == b.engagement;
    }
    friend bool operator!=(const RecipientState& a, const RecipientState& b) noexcept {
        return !(a == b);
    }
};

/// How often an event came for a recipient, and when first and last (unix seconds; 0: never).
/// Copies of one event count once.
struct EventCount {
    std::int64_t count = 0;
    std::int64_t first = 0;
    std::int64_t last = 0;
};

/// Everything known about one recipient of a message, or (with an empty `email`) about the send.
struct RecipientStatus {
    std::string email;  ///< lower case; empty for the send itself
    DeliveryState state = DeliveryState::none;
    std::int64_t state_time = 0;  ///< when the fact that set `state` happened (0: implied)
    /// Why, for failed, deferred, blocked, bounced and dropped: SendGrid's reason (e.g. "550
    /// 5.1.1 mailbox unavailable"), or the send's failure reason.
    std::string reason;
    std::string smtp_status;     ///< a bounce's enhanced status code, e.g. "5.1.1"
    std::string classification;  ///< a bounce's bounce_classification, e.g. "Invalid Address"
    std::string message_id;      ///< the send only: SendGrid's X-Message-Id
    int http_status = 0;         ///< the send only: the final answer's status
    EventCount processed, deferred, delivered, bounce, dropped;
    EventCount open, click, spamreport, unsubscribe, group_unsubscribe, group_resubscribe;

    /// The part of the status whose changes are signalled.
    RecipientState summary() const noexcept {
        RecipientState result{state, 0};
        const std::pair<const EventCount*, Engagement> engagements[] = {
            {&open, engaged_open},
            {&click, engaged_click},
            {&spamreport, engaged_spamreport},
            {&unsubscribe, engaged_unsubscribe},
            {&group_unsubscribe, engaged_group_unsubscribe},
            {&group_resubscribe, engaged_group_resubscribe}};
        for (const auto& [count, bit] : engagements) {
            if (count->count > 0) result.engagement |= bit;
        }
        return result;
    }
};

/// One message's status: the send, then each recipient (sorted by email).
struct MessageStatus {
    std::string key;  ///< the tracking key
    RecipientStatus send;
    std::vector<RecipientStatus> recipients;

    /// The recipient with this address (any case), or null.
    const RecipientStatus* recipient(const std::string& email) const noexcept {
        for (const auto& status : recipients) {
            if (status.email.size() != email.size()) continue;
            bool same = true;
            for (std::size_t i = 0; i < email.size() && same; ++i) {
                char c = email[i];
                if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
                same = c == status.email[i];
            }
            if (same) return &status;
        }
        return nullptr;
    }

    /// How many recipients are in `state`.
    std::size_t count(DeliveryState state) const noexcept {
        std::size_t n = 0;
        for (const auto& status : recipients) n += status.state == state ? 1 : 0;
        return n;
    }

    /// One line, e.g. "accepted; delivered to 2 of 3; bounced: c@example.com (550 5.1.1 ...)",
    /// or "failed (HTTP 400; ...); failed: a@example.com" for a message nobody was sent: "delivered
    /// to 0 of N" only once some recipient got past failed, and a recipient's reason only when it
    /// is not the send's.
    std::string summary() const {
        std::string text = to_string(send.state);
        const bool failed = send.state == DeliveryState::failed && !send.reason.empty();
        if (failed) text += " (" + send.reason + ")";
        bool any_sent = false;
        for (const auto& status : recipients) any_sent |= status.state > DeliveryState::failed;
        if (any_sent) {
            text += "; delivered to " + std::to_string(count(DeliveryState::delivered)) + " of " +
                    std::to_string(recipients.size());
        }
        for (const auto& status : recipients) {
            if (status.state == DeliveryState::delivered) continue;
            text += "; " + std::string(to_string(status.state)) + ": " + status.email;
            if (!status.reason.empty() && !(failed && status.reason == send.reason)) {
                text += " (" + status.reason + ")";
            }
        }
        return text;
    }
};

SENDGRID_BACKEND_NAMESPACE_END
