#pragma once

/// @file
/// The library's exception types. Each `what()` starts with a stable id in brackets, e.g.
/// `[sendgrid_backend.invalid_message] to[1]: ...`, so that logs can be matched without parsing
/// the prose. No message ever contains the API key.

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/outcome.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Base of every exception the library throws on purpose.
class Error : public std::runtime_error {
  public:
    /// The stable id, e.g. "sendgrid_backend.invalid_message".
    const std::string& id() const noexcept { return id_; }

  protected:
    Error(std::string id, const std::string& what)
        : std::runtime_error("[" + id + "] " + what), id_(std::move(id)) {}

  private:
    std::string id_;
};

/// Bad or missing configuration: no API key, an unparsable setting (Django's exception name).
class ImproperlyConfigured : public Error {
  public:
    /// `setting` names what is wrong, e.g. "SENDGRID_API_KEY".
    ImproperlyConfigured(std::string setting, const std::string& reason)
        : Error("sendgrid_backend.improperly_configured", setting + ": " + reason),
          setting_(std::move(setting)) {}

    const std::string& setting() const noexcept { return setting_; }

  private:
    std::string setting_;
};

/// A message SendGrid would refuse, found before anything was sent. `field()` names the
/// offending field as a path into the message, e.g. `to[2]`, `personalizations[0].cc[1]`,
/// `extra_headers["X-Tag"]`, `attachments[1].filename`.
class InvalidMessage : public Error {
  public:
    InvalidMessage(std::string field, const std::string& reason)
        : InvalidMessage("sendgrid_backend.invalid_message", std::move(field), reason) {}

    const std::string& field() const noexcept { return field_; }
    /// The explanation without the id and field prefix.
    const std::string& reason() const noexcept { return reason_; }

  protected:
    InvalidMessage(std::string id, std::string field, const std::string& reason)
        : Error(std::move(id), field + ": " + reason), field_(std::move(field)), reason_(reason) {}

  private:
    std::string field_;
    std::string reason_;
};

/// Text that `deserialize_message` cannot read back: not JSON, another format version, a field
/// of the wrong type or an unknown one. `field()` names it as in InvalidMessage.
/// Derives from InvalidMessage, which was thrown before 0.11, so that existing catches keep
/// working for one release; from 1.0 it derives from Error alone.
class InvalidStoredMessage : public InvalidMessage {
  public:
    InvalidStoredMessage(std::string field, const std::string& reason)
        : InvalidMessage("sendgrid_backend.invalid_stored_message", std::move(field), reason) {}
};

/// An Event Webhook body that is not a JSON array of event objects. `field()` is "body" or
/// `body[i]`. Derives from InvalidMessage for one release, as InvalidStoredMessage does.
class InvalidWebhookBody : public InvalidMessage {
  public:
    InvalidWebhookBody(std::string field, const std::string& reason)
        : InvalidMessage("sendgrid_backend.invalid_webhook_body", std::move(field), reason) {}
};

/// Thrown by a `sendgrid_pre_send` handler to stop one message from being sent. The message is
/// still emitted on `sendgrid_email_sent`, with fail_flag true and this reason recorded.
class CancelSend : public Error {
  public:
    explicit CancelSend(const std::string& reason)
        : Error("sendgrid_backend.cancel_send", reason), reason_(reason) {}

    const std::string& reason() const noexcept { return reason_; }

  private:
    std::string reason_;
};

/// Thrown by `send_messages` (unless fail_silently) after every message was attempted and
/// emitted, when at least one was not accepted. Lists each failed message and why.
class SendError : public Error {
  public:
    struct Failure {
        std::size_t index;  ///< position in the batch handed to send_messages
        SendStatus status;
        int http_status;
        std::string reason;
    };

    SendError(std::vector<Failure> failures, std::size_t batch_size)
        : SendError("sendgrid_backend.send_error", std::move(failures), batch_size, "") {}

    const std::vector<Failure>& failures() const noexcept { return failures_; }

  protected:
    SendError(std::string id, std::vector<Failure> failures, std::size_t batch_size,
              const std::string& preface)
        : Error(std::move(id), preface + describe(failures, batch_size)),
          failures_(std::move(failures)) {}

  private:
    /// "2 of 3 messages were not sent: [0] cancelled: user opted out; [2] rejected: HTTP 400;
    /// ..." Each failure says its status once: not again when the reason starts by saying it.
    static std::string describe(const std::vector<Failure>& failures, std::size_t batch_size) {
        std::string text = std::to_string(failures.size()) + " of " + std::to_string(batch_size) +
                           (batch_size == 1 ? " message" : " messages") +
                           (failures.size() == 1 ? " was" : " were") + " not sent:";
        for (const auto& failure : failures) {
            text += " [" + std::to_string(failure.index) + "] " + describe(failure) + ";";
        }
        text.pop_back();
        return text;
    }

    static std::string describe(const Failure& failure) {
        const std::string status = to_string(failure.status);
        const std::string& reason = failure.reason;
        // "cancelled: ...", "outcome unknown: ...": the reason's first clause names the status.
        const std::size_t clause = reason.find(": ");
        if (clause != std::string::npos && clause >= status.size() &&
            reason.compare(clause - status.size(), status.size(), status) == 0 &&
            (clause == status.size() || reason[clause - status.size() - 1] == ' ')) {
            return reason;
        }
        std::string text = status;
        // "HTTP 400; ..." says the HTTP status already.
        const std::string http = "HTTP " + std::to_string(failure.http_status);
        const bool said = reason.compare(0, http.size(), http) == 0 &&
                          (reason.size() == http.size() || reason[http.size()] < '0' ||
                           reason[http.size()] > '9');
        if (failure.http_status != 0 && !said) {
            text += " " + std::to_string(failure.http_status);
        }
        return reason.empty() ? text : text + ": " + reason;
    }

    std::vector<Failure> failures_;
};

/// Thrown by `send_messages` after every message was emitted, also with fail_silently, when the
/// transport broke its contract: it threw, answered a request it was not given or one twice, or
/// never answered. Messages whose request may have gone out are `unknown`, the others
/// `transport_failed`; `failures()` lists them all and `cause()` is what the transport threw
/// (null when it broke the contract without throwing).
class BrokenTransport : public SendError {
  public:
    BrokenTransport(std::vector<Failure> failures, std::size_t batch_size,
                    const std::string& problem, std::exception_ptr cause)
        : SendError("sendgrid_backend.broken_transport", std::move(failures), batch_size,
                    "the transport broke (" + problem + "); "),
          cause_(std::move(cause)) {}

    const std::exception_ptr& cause() const noexcept { return cause_; }

  private:
    std::exception_ptr cause_;
};

/// A queue is full: BackgroundSender's (when_full is `refuse`) or the Redis queue's max_length.
class QueueFull : public Error {
  public:
    explicit QueueFull(const std::string& what) : Error("sendgrid_backend.queue_full", what) {}

  protected:
    QueueFull(std::string id, const std::string& what) : Error(std::move(id), what) {}
};

/// A BackgroundSender that is stopping refuses new messages. Derives from QueueFull, which was
/// thrown before 0.11, for one release; from 1.0 it derives from Error alone.
class SenderStopped : public QueueFull {
  public:
    explicit SenderStopped(const std::string& what)
        : QueueFull("sendgrid_backend.sender_stopped", what) {}
};

/// A call that would wait for itself: e.g. `BackgroundSender::drain` from one of that sender's
/// own worker threads (a callback or a handler), which would wait for its own batch to end.
class WouldDeadlock : public Error {
  public:
    explicit WouldDeadlock(const std::string& what)
        : Error("sendgrid_backend.would_deadlock", what) {}
};

/// A transport could not be set up: libcurl's global init failed, no handle could be made.
class TransportSetupError : public Error {
  public:
    explicit TransportSetupError(const std::string& what)
        : Error("sendgrid_backend.transport_setup", what) {}
};

/// A testing helper could not set itself up: FakeSendgridServer could not listen or start,
/// WebhookSigner could not make a key.
class TestingSetupError : public Error {
  public:
    explicit TestingSetupError(const std::string& what)
        : Error("sendgrid_backend.testing_setup", what) {}
};

namespace detail {

/// The what() of an exception_ptr, for logs.
inline std::string describe_exception(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
