#pragma once

/// @file
/// What happened to one message: recorded on the message by the backend after its final attempt
/// and before `sendgrid_email_sent` fires, so that any handler can tell why a send failed.

#include <chrono>
#include <string>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Why no HTTP answer arrived (modeled on cpp-httplib's `Error`). `none` when one did.
enum class TransportError {
    none,
    connection_failed,  ///< DNS, refused or unreachable: nothing was sent, safe to retry
    timeout,            ///< no complete answer in time: SendGrid may have accepted the mail
    tls,                ///< certificate or handshake failure
    send_failed,        ///< the connection broke while the request was being written
    receive_failed,     ///< the connection broke before the whole answer arrived
    payload_too_large,  ///< refused locally: the serialized request is over SendGrid's limit
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
        case TransportError::payload_too_large:
            return "payload_too_large";
        case TransportError::other:
            return "other";
    }
    return "other";
}

/// One entry of SendGrid's `{"errors": [...]}` answer.
struct ApiError {
    std::string message;
    std::string field;  ///< empty when SendGrid named none (it may send null)
    std::string help;   ///< SendGrid's `help`, serialized when it is not a string
};

/// How the stages of a send can end for one message.
enum class SendStatus {
    not_attempted,  ///< not handed to send_messages yet
    accepted,       ///< SendGrid answered 2xx (202, or 200 in sandbox mode)
    rejected,       ///< SendGrid answered with an error status
    transport_failed,
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
        case SendStatus::invalid:
            return "invalid";
        case SendStatus::cancelled:
            return "cancelled";
    }
    return "not_attempted";
}

/// The outcome of the last `send_messages` call that handled a message.
struct SendOutcome {
    SendStatus status = SendStatus::not_attempted;
    int http_status = 0;           ///< status of the final answer; 0 when none arrived
    std::string message_id;        ///< SendGrid's X-Message-Id; empty unless accepted
    std::vector<ApiError> errors;  ///< SendGrid's `errors[]` from the final answer
    TransportError transport_error = TransportError::none;
    std::string failure_reason;            ///< one line saying why, empty when accepted
    int attempts = 0;                      ///< HTTP requests made (retries included)
    std::chrono::nanoseconds duration{0};  ///< from the first attempt to the final answer

    bool accepted() const noexcept { return status == SendStatus::accepted; }
};

SENDGRID_BACKEND_NAMESPACE_END
