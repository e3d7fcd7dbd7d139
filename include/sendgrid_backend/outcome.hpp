#pragma once

/// @file
/// What happened to one message: recorded on the message by the backend after its final attempt
/// and before `sendgrid_email_sent` fires, so that any handler can tell why a send failed.

#include <chrono>
#include <string>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Why no complete HTTP answer arrived (modeled on cpp-httplib's `Error`); `none` when one did.
/// Whether the request may still have reached SendGrid is a separate question, answered by
/// `SendStatus` (`transport_failed`: it did not; `unknown`: it may have).
enum class TransportError {
    none,
    connection_failed,  ///< DNS, refused or unreachable
    timeout,            ///< no complete answer in time
    tls,                ///< certificate or handshake failure
    send_failed,        ///< the connection broke while the request was being written
    receive_failed,     ///< the connection broke (or was closed) before the whole answer arrived
    bad_answer,         ///< what came back was not HTTP
    payload_too_large,  ///< refused locally: the serialized request is over SendGrid's limit
    exception,          ///< the transport threw (a bug in a custom transport, or out of memory)
    other,
};

/// A readable name for a TransportError, e.g. "timeout".
constexpr const char* to_string(TransportError error) noexcept {
    switch (error) {
        case TransportError::none:
            return "none";
        case TransportError::connection_failed:
            return "connection_failed";
        case TransportError::timeout:
            return "timeout";
        case TransportError::tls:
            return "tls";
        case TransportError::send_failed:
            return "send_failed";
        case TransportError::receive_failed:
            return "receive_failed";
        case TransportError::bad_answer:
            return "bad_answer";
        case TransportError::payload_too_large:
            return "payload_too_large";
        case TransportError::exception:
            return "exception";
        case TransportError::other:
            return "other";
    }
    return "other";
}

/// The custom_arg that carries a message's tracking key unless told otherwise
/// (`Settings::tracking_arg`, `StatusTrackerOptions::tracking_arg`).
inline constexpr const char* default_tracking_arg = "sendgrid_backend_key";

/// One entry of SendGrid's `{"errors": [...]}` answer.
struct ApiError {
    std::string message;
    std::string field;  ///< empty when SendGrid named none (it may send null)
    std::string help;   ///< SendGrid's `help`, serialized when it is not a string
};

/// How the stages of a send can end for one message.
enum class SendStatus {
    not_attempted,     ///< not handed to send_messages yet
    accepted,          ///< SendGrid answered 2xx (202, or 200 in sandbox mode)
    rejected,          ///< SendGrid answered with an error status
    transport_failed,  ///< no request reached SendGrid (DNS, refused connection, TLS handshake)
    /// The request was sent but no answer arrived (a timeout, a connection closed or reset):
    /// SendGrid may have accepted it. Not retried unless `RetryPolicy::retry_unknown_outcome`.
    unknown,
    invalid,    ///< refused before sending: InvalidMessage (reason in `failure_reason`)
    cancelled,  ///< a sendgrid_pre_send handler threw CancelSend
};

/// A readable name for a SendStatus, e.g. "accepted".
constexpr const char* to_string(SendStatus status) noexcept {
    switch (status) {
        case SendStatus::not_attempted:
            return "not_attempted";
        case SendStatus::accepted:
            return "accepted";
        case SendStatus::rejected:
            return "rejected";
        case SendStatus::transport_failed:
            return "transport_failed";
        case SendStatus::unknown:
            return "unknown";
        case SendStatus::invalid:
            return "invalid";
        case SendStatus::cancelled:
            return "cancelled";
    }
    return "not_attempted";
}

/// What one try that was tried again got: its HTTP status (0 when no answer arrived) and why no
/// answer arrived.
struct EarlierTry {
    int http_status = 0;
    TransportError transport_error = TransportError::none;
};

struct SendPart;

/// The outcome of the last `send_messages` call that handled a message.
struct SendOutcome {
    SendStatus status = SendStatus::not_attempted;
    int http_status = 0;     ///< status of the final answer; 0 when none arrived
    std::string message_id;  ///< SendGrid's X-Message-Id; empty unless accepted
    /// The key the message's status is tracked by (`Settings::tracking_keys`): the one in its
    /// `custom_args[Settings::tracking_arg]`, or a generated one. Empty when tracking is off or
    /// the message was cancelled before it had one.
    std::string tracking_key;
    std::vector<ApiError> errors;  ///< SendGrid's `errors[]` from the final answer
    TransportError transport_error = TransportError::none;
    std::string failure_reason;  ///< one line saying why, empty when accepted
    /// Requests that went on the wire: written, wholly or in part, to a connection. 0 when the
    /// message never left the process (invalid, cancelled, every connection refused).
    int attempts = 0;
    /// Times the request was handed to the transport, retries included. A try that never
    /// reached a connection (refused, DNS) counts here but not in `attempts`.
    int tries = 0;
    std::chrono::nanoseconds duration{0};  ///< from the first try to the final outcome
    /// The tries before the final one, oldest first (a 429, a refused connection...): with the
    /// final answer above, what every request of this message got. Empty when the first try was
    /// final, so that a send without retries allocates nothing for it.
    std::vector<EarlierTry> earlier_tries;
    /// Empty unless the message went as several requests (`Settings::split_large_messages`):
    /// each part's recipients and outcome, in order. The fields above then sum the parts up:
    /// accepted only when every part was (`message_id` is then the first part's), else the
    /// first failed part's status (`unknown` when any part's is), answer and errors, and a
    /// `failure_reason` naming each failed part; attempts and tries add up, duration is the
    /// longest, earlier_tries are every part's.
    std::vector<SendPart> parts;

    bool accepted() const noexcept { return status == SendStatus::accepted; }
    /// Whether SendGrid may have accepted the message although no answer said so: retrying it
    /// may deliver it twice.
    bool maybe_delivered() const noexcept { return status == SendStatus::unknown; }
    /// The recipients of every part that was not accepted (sent in parts), in order; empty
    /// without parts (then the message's status says it for everyone).
    std::vector<std::string> recipients_not_accepted() const;
};

/// One request of a message sent in parts: who it was for, and how it ended.
struct SendPart {
    std::vector<std::string> recipients;  ///< to, cc and bcc of its personalizations, as given
    SendOutcome outcome;                  ///< `parts` always empty
};

inline std::vector<std::string> SendOutcome::recipients_not_accepted() const {
    std::vector<std::string> recipients;
    for (const SendPart& part : parts) {
        if (part.outcome.accepted()) continue;
        recipients.insert(recipients.end(), part.recipients.begin(), part.recipients.end());
    }
    return recipients;
}

SENDGRID_BACKEND_NAMESPACE_END
