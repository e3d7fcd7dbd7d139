#pragma once

/// @file
/// `SendgridBackend`: sends `EmailMessage`s through SendGrid's v3 API and emits
/// `sendgrid_email_sent` exactly once per message, as soon as its outcome is final, on the
/// caller's thread (the counterpart of `sendgrid_backend.mail.SendgridBackend`).
///
/// The path of a message: `sendgrid_pre_send` → `build_payload` (payload.hpp) → delivery
/// (delivery.hpp: retries, outcomes) → the transport (transport.hpp, transport/curl.hpp) →
/// the outcome on the message (outcome.hpp) → `sendgrid_email_sent`.
///
/// @code
/// #include <sendgrid_backend/sendgrid_backend.hpp>
/// #include <sendgrid_backend/transport/curl.hpp>  // libcurl as the transport
///
/// sendgrid_backend::SendgridBackend backend(sendgrid_backend::Settings::from_env());
/// std::vector<sendgrid_backend::EmailMessage> batch = make_messages();
/// std::size_t sent = backend.send_messages(batch);  // throws SendError listing failures
/// @endcode

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sendgrid_backend/delivery.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/detail/message_echo.hpp"
#include "sendgrid_backend/detail/signals/handler_errors.hpp"
#include "sendgrid_backend/detail/status/tracking_key.hpp"
#include "sendgrid_backend/detail/text/random_key.hpp"
#include "sendgrid_backend/detail/text/url.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/status/recorder.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Receives each exception that a `sendgrid_email_sent` handler threw, with the message the
/// handler was called for. Called on the sending thread.
using HandlerErrorHandler = std::function<void(const EmailMessage&, std::exception_ptr)>;

/// What Django passes to a backend's constructor, plus the seams a C++ user wants.
struct BackendOptions {
    /// Django's fail_silently: no SendError; failures are still recorded and emitted.
    bool fail_silently = false;
    /// Beats `Settings::api_key` (django-sendgrid-v5's `api_key` argument).
    std::optional<std::string> api_key;
    /// The HTTP transport; null: the default one (libcurl, once transport/curl.hpp is
    /// included somewhere in the program).
    std::shared_ptr<Transport> transport;
    /// Where echo_to_stdout writes; null: stdout.
    std::ostream* stream = nullptr;
    /// Receives exceptions thrown by sendgrid_email_sent handlers; null: one line on stderr.
    HandlerErrorHandler on_handler_error;
    /// The clock retries wait on; null: the real one. A fake one lets tests skip the waiting.
    Clock* clock = nullptr;
    /// Receives each message once its outcome is final, just before `sendgrid_email_sent`
    /// (a `StatusTracker`, status/tracker.hpp); null: none. What it throws goes to
    /// `on_handler_error`.
    std::shared_ptr<StatusRecorder> statuses;
    /// Null: none. Otherwise every try takes a permit from it first, and a 429 that says how
    /// long to wait pauses it for everyone sharing it (rate_limit.hpp; `RedisRateLimit` shares
    /// one among hosts).
    std::shared_ptr<RateLimit> rate_limit;
};

/// Sends email through SendGrid's v3 Web API. See the file comment for an example.
///
/// Thread safety: one backend may be shared by any number of threads; each `send_messages` call
/// works on its own messages. Construction throws `ImproperlyConfigured` for bad settings.
namespace detail {

/// What a message in parts meant for prepare.
enum class PartsPrepared { one_request, refused, added };

/// How a backend sends a message in parts (Settings::split_large_messages): installed by
/// <sendgrid_backend/parts.hpp>, so that only programs that split compile it.
struct PartsHooks {
    /// Appends the requests of `message`'s parts, with tracking key `key` (empty: none);
    /// one_request when it fits in one (nothing appended).
    /// @throws InvalidMessage naming the field.
    PartsPrepared (*prepare)(const SendgridBackend& backend, EmailMessage& message,
                             const std::string& key, std::vector<HttpRequest>& requests);
    /// Sums up the parts' outcomes into the message's (`record_parts`).
    void (*record)(SendOutcome& outcome);
};

inline std::atomic<const PartsHooks*>& parts_hooks() noexcept {
    static std::atomic<const PartsHooks*> hooks{nullptr};
    return hooks;
}

struct MessageParts;  // parts.hpp

}  // namespace detail

class SendgridBackend {
  public:
    using Settings = sendgrid_backend::Settings;

    using Options = BackendOptions;

    /// @throws ImproperlyConfigured naming the setting when `Settings::validate` refuses the
    ///         settings, the transport cannot use the host URL, or no transport is available.
    explicit SendgridBackend(Settings settings = Settings::from_env(), Options options = {});

    /// The transport options `settings` asks for (what the default transport is made with).
    static TransportOptions transport_options(const Settings& settings) {
        TransportOptions options;
        options.timeout = settings.timeout;
        options.connect_timeout = settings.connect_timeout;
        options.ca_bundle = settings.ca_bundle;
        options.gzip_min_bytes = settings.gzip_min_bytes;
        options.max_idle_connection_age = settings.max_idle_connection_age;
        return options;
    }

    /// Sends every message, records each outcome on it and emits `sendgrid_email_sent` once per
    /// message (fail_flag false only when SendGrid accepted it), then returns how many were
    /// accepted. Each emission happens on this thread as soon as that message's outcome is
    /// final (messages refused before sending first), so the order is not the batch's. Up to
    /// `max_in_flight` requests are in flight at once; a handler runs between transfers of the
    /// batch, so one that blocks for longer than the timeout can make the others time out.
    /// @throws SendError after everything was attempted and emitted, when a message failed and
    ///         fail_silently is off; BrokenTransport (a SendError), also with fail_silently,
    ///         when the transport threw or broke its contract. Any other exception (out of
    ///         memory, say) propagates once every message has had its emission.
    std::size_t send_messages(std::vector<EmailMessage>& messages) const {
        return send_messages(messages.data(), messages.size());
    }

    /// The same for `count` messages starting at `messages`.
    std::size_t send_messages(EmailMessage* messages, std::size_t count) const;

    /// Emits `sendgrid_email_sent` once for a message whose outcome was decided without a send
    /// by this call: e.g. a queue worker reclaiming a message a dead worker may have sent. Handler
    /// errors go to `on_handler_error`, as for every emission.
    void emit_outcome(const EmailMessage& message) const;

    /// Hands an exception that a handler or callback run for `message` threw (`thrower` says
    /// which, e.g. "BackgroundSender::submit callback") to `on_handler_error`, or writes one
    /// line on stderr: the one path for such errors. Never throws.
    void report_handler_error(const EmailMessage& message, const std::exception_ptr& error,
                              const char* thrower) const noexcept {
        detail::report_handler_error(options_.on_handler_error, message, error, thrower);
    }

    /// Sends one message; returns whether SendGrid accepted it.
    bool send_message(EmailMessage& message) const { return send_messages(&message, 1) == 1; }

    /// The exact JSON this backend would POST for `message` (Django's `_build_sg_mail`), but for
    /// the tracking key a send adds when `message` has none (`Settings::tracking_keys`): a
    /// message carrying `custom_args[tracking_arg]` is posted exactly as this says.
    /// Pure: no I/O, no signal. Returns an nlohmann::json: include <nlohmann/json.hpp> to call it.
    /// @throws InvalidMessage naming the offending field.
    template <class Json = nlohmann::json>  // a template: compiled only where called
    Json build_payload(const EmailMessage& message) const {
        return sendgrid_backend::build_payload<Json>(message, payload_options_);
    }

    /// The same payload as the exact JSON text this backend POSTs (keys in writing order).
    /// @throws InvalidMessage naming the offending field.
    std::string serialize_payload(const EmailMessage& message) const {
        return sendgrid_backend::serialize_payload(message, payload_options_);
    }

    bool fail_silently() const noexcept { return options_.fail_silently; }
    /// The settings in effect (validated; the API key is the one in use).
    const Settings& settings() const noexcept { return settings_; }
    /// Whether mail goes out in SendGrid's sandbox mode (validated, not delivered).
    bool sandbox_mode() const noexcept { return payload_options_.sandbox_mode; }
    /// The endpoint requests go to, e.g. "https://api.sendgrid.com/v3/mail/send".
    const std::string& send_url() const noexcept { return send_url_; }
    Transport& transport() const noexcept { return *options_.transport; }
    /// BackendOptions::rate_limit (null: none).
    const std::shared_ptr<RateLimit>& rate_limit() const noexcept { return options_.rate_limit; }

  private:
    /// The emissions of one send_messages call: each message exactly once, and the tally.
    class Ledger {
      public:
        Ledger(const SendgridBackend& backend, EmailMessage* messages, std::size_t count)
            : backend_(backend), messages_(messages), emitted_(count, false) {}

        /// Emits messages[i] unless it was emitted already.
        void emit(std::size_t i) {
            if (emitted_[i]) return;
            emitted_[i] = true;  // first: a handler that throws out of memory is not re-run
            EmailMessage& message = messages_[i];
            const SendOutcome& outcome = message.outcome;
            const bool fail_flag = !outcome.accepted();
            if (fail_flag) {
                failures_.push_back(SendError::Failure{i, outcome.status, outcome.http_status,
                                                       outcome.failure_reason});
            } else {
                ++accepted_;
            }
            backend_.emit_outcome(message);
        }

        /// `error` interrupted the call: every message not emitted yet is given a final outcome
        /// (`unknown` when it was handed to the transport, else `transport_failed`) and
        /// emitted. Errors while doing so are swallowed: the caller rethrows `error`.
        void emit_rest(const std::exception_ptr& error) noexcept {
            for (std::size_t i = 0; i < emitted_.size(); ++i) {
                if (emitted_[i]) continue;
                try {
                    SendOutcome& outcome = messages_[i].outcome;
                    // Sent in parts: their tries so far.
                    if (!outcome.parts.empty()) backend_.parts_->record(outcome);
                    const std::string what = detail::describe_exception(error);
                    outcome.status =
                        outcome.tries > 0 ? SendStatus::unknown : SendStatus::transport_failed;
                    outcome.failure_reason =
                        (outcome.tries > 0 ? "outcome unknown: interrupted by an error ("
                                           : "not sent: interrupted by an error (") +
                        what + ")";
                    emit(i);
                } catch (...) {
                    emitted_[i] = true;
                }
            }
        }

        std::size_t accepted() const noexcept { return accepted_; }
        bool all_accepted() const noexcept { return failures_.empty(); }

        /// Each failure, in batch order (they were recorded as outcomes became final). Placed
        /// by index rather than with std::sort, whose code every sending file would compile
        /// (benchmarks/compile_cost.sh).
        std::vector<SendError::Failure> failures() const {
            constexpr std::size_t none = static_cast<std::size_t>(-1);
            std::vector<std::size_t> failure_at(emitted_.size(), none);
            for (std::size_t k = 0; k < failures_.size(); ++k) failure_at[failures_[k].index] = k;
            std::vector<SendError::Failure> in_order;
            in_order.reserve(failures_.size());
            for (const std::size_t k : failure_at) {
                if (k != none) in_order.push_back(failures_[k]);
            }
            return in_order;
        }

      private:
        const SendgridBackend& backend_;
        EmailMessage* messages_;
        std::vector<bool> emitted_;
        std::vector<SendError::Failure> failures_;
        std::size_t accepted_ = 0;
    };

    static void fail(EmailMessage& message, SendStatus status, std::string reason) {
        message.outcome.status = status;
        message.outcome.failure_reason = std::move(reason);
    }

    /// Runs the pre-send hook and appends the message's requests to `requests`: one, or one per
    /// part (recorded in `outcome.parts`) when it is sent in parts. False (outcome recorded,
    /// nothing appended) when it is not to be sent.
    bool prepare(EmailMessage& message, std::vector<HttpRequest>& requests) const {
        try {
            sendgrid_pre_send.send(*this, message);
        } catch (const CancelSend& cancel) {
            fail(message, SendStatus::cancelled, "cancelled: " + cancel.reason());
            return false;
        } catch (...) {
            fail(message, SendStatus::cancelled,
                 "cancelled: a sendgrid_pre_send handler threw: " +
                     detail::describe_exception(std::current_exception()));
            return false;
        }
        std::string key;
        try {
            if (settings_.tracking_keys) key = tracking_key_for(message);
            if (parts_ != nullptr) {
                const detail::PartsPrepared parts = parts_->prepare(*this, message, key, requests);
                if (parts != detail::PartsPrepared::one_request) {
                    return parts == detail::PartsPrepared::added;
                }
            }
            return add_request(message, payload_options_, key, requests);
        } catch (const InvalidMessage& invalid) {
            fail(message, SendStatus::invalid, invalid.field() + ": " + invalid.reason());
            return false;
        }
    }

    /// Appends the request for `message` (the part of it `options` window, if any) to
    /// `requests`; false when it is refused (outcome recorded).
    /// @throws InvalidMessage naming the field.
    bool add_request(EmailMessage& message, const PayloadOptions& options, const std::string& key,
                     std::vector<HttpRequest>& requests) const {
        HttpRequest request;
        if (settings_.tracking_keys) {
            // A personalization with custom_args of its own gets the key too: SendGrid echoes
            // a personalization's custom_args instead of the message's, and its recipients'
            // events must carry it. Taken out again once the body is written.
            const detail::PlacedTrackingKey placed(message, settings_.tracking_arg, key);
            message.outcome.tracking_key = key;
            request.body = sendgrid_backend::serialize_payload(message, options);
        } else {
            request.body = sendgrid_backend::serialize_payload(message, options);
        }
        if (request.body.size() > limits::max_payload_bytes) {
            fail(message, SendStatus::invalid,
                 "payload: the request is " + std::to_string(request.body.size()) +
                     " bytes; SendGrid accepts at most 30 MB");
            message.outcome.transport_error = TransportError::payload_too_large;
            return false;
        }
        request.url = send_url_;
        request.headers = request_headers_;
        requests.push_back(std::move(request));
        return true;
    }

    /// The message's tracking key: its own, or a new one for this send only (a message object
    /// sent again, or used as a template, gets a new key each time).
    /// @throws InvalidMessage for an empty own key.
    std::string tracking_key_for(const EmailMessage& message) const {
        const std::string* own = detail::own_tracking_key(message, settings_.tracking_arg);
        return own != nullptr ? *own : detail::random_key();
    }

    /// Writes each message about to be sent to the echo stream, as the original's
    /// SENDGRID_ECHO_TO_STDOUT does (a readable rendering, not the raw MIME).
    void echo(const EmailMessage* messages, const std::vector<std::size_t>& positions) const {
        std::string text;
        for (std::size_t k = 0; k < positions.size(); ++k) {
            // A message sent in parts is at several positions in a row: echoed once.
            if (k == 0 || positions[k] != positions[k - 1]) {
                detail::append_echo(text, messages[positions[k]]);
            }
        }
        std::lock_guard<std::mutex> lock(echo_mutex_);
        if (options_.stream != nullptr) {
            options_.stream->write(text.data(), static_cast<std::streamsize>(text.size()));
            options_.stream->flush();
        } else {
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
        }
    }

    Settings settings_;
    Options options_;
    PayloadOptions payload_options_;
    DeliveryOptions delivery_options_;
    std::string send_url_;
    HttpHeaders request_headers_;  ///< Authorization and Content-Type, made once
    mutable std::mutex echo_mutex_;
    /// Set when Settings::split_large_messages is (parts.hpp installs them).
    const detail::PartsHooks* parts_ = nullptr;

    friend struct detail::MessageParts;
};

#if SENDGRID_BACKEND_DEFINE_COMPILED
SENDGRID_BACKEND_COMPILED SendgridBackend::SendgridBackend(Settings settings, Options options)
    : settings_(std::move(settings)), options_(std::move(options)) {
    if (options_.api_key) settings_.api_key = *options_.api_key;
    options_.api_key.reset();  // one copy of the secret is enough
    settings_.validate();
    if (settings_.split_large_messages) {
        parts_ = detail::parts_hooks().load();
        if (parts_ == nullptr) {
            throw ImproperlyConfigured("Settings::split_large_messages",
                                       "is on, but <sendgrid_backend/parts.hpp> is included "
                                       "nowhere in the program: include it in one file (it "
                                       "installs the sending in parts)");
        }
    }
    detail::BaseUrl url;
    detail::base_url_problem(settings_.host_url, url);  // validate() accepted it
    send_url_ = url.mail_send_url();
    if (!options_.transport) {
        detail::TransportFactory factory = detail::default_transport_factory().load();
        if (factory == nullptr) {
            throw ImproperlyConfigured("BackendOptions::transport",
                                       "none given and no default: include "
                                       "<sendgrid_backend/transport/curl.hpp> and link "
                                       "sendgrid_backend::curl, or pass Options::transport");
        }
        options_.transport = factory(transport_options(settings_));
    }
    if (const std::string problem = options_.transport->url_problem(send_url_); !problem.empty()) {
        throw ImproperlyConfigured(
            "Settings::host_url",
            detail::quote_for_error(detail::url_for_error(settings_.host_url)) + " " + problem);
    }
    request_headers_ = {{"Authorization", "Bearer " + settings_.api_key},
                        {"Content-Type", "application/json"}};
    delivery_options_.retry = settings_.retry;
    delivery_options_.max_in_flight = settings_.max_in_flight;
    // The transport answers within `timeout`; this only catches one that never does.
    delivery_options_.give_up_after = settings_.timeout + std::chrono::seconds(10);
    delivery_options_.secret = settings_.api_key;
    delivery_options_.rate_limit = options_.rate_limit.get();
    delivery_options_.max_permit_wait =
        std::max(settings_.retry.max_backoff, settings_.retry.max_retry_after);
    payload_options_.sandbox_mode = settings_.effective_sandbox_mode();
    payload_options_.track_email_opens = settings_.track_email_opens;
    payload_options_.track_clicks_html = settings_.track_clicks_html;
    payload_options_.track_clicks_plain = settings_.track_clicks_plain;
    payload_options_.deduplicate_recipients = settings_.deduplicate_recipients;
}

SENDGRID_BACKEND_COMPILED std::size_t SendgridBackend::send_messages(EmailMessage* messages,
                                                                     std::size_t count) const {
    Ledger ledger(*this, messages, count);
    DeliveryReport report;
    try {
        std::vector<HttpRequest> requests;
        std::vector<SendOutcome*> outcomes;
        std::vector<std::size_t> positions;   // request k is (a part of) messages[positions[k]]
        std::vector<std::size_t> parts_left;  // per message, once one is sent in parts
        requests.reserve(count);
        outcomes.reserve(count);
        positions.reserve(count);
        // Every outcome starts afresh before any is prepared: an error part-way must not leave
        // a later message with its previous send's outcome (and tracking key) to record.
        for (std::size_t i = 0; i < count; ++i) messages[i].outcome = SendOutcome{};
        for (std::size_t i = 0; i < count; ++i) {
            SendOutcome& outcome = messages[i].outcome;
            if (!prepare(messages[i], requests)) {
                ledger.emit(i);  // refused before sending: final already
                continue;
            }
            if (outcome.parts.empty()) {
                outcomes.push_back(&outcome);
                positions.push_back(i);
                continue;
            }
            parts_left.resize(count);
            parts_left[i] = outcome.parts.size();
            for (SendPart& part : outcome.parts) {
                outcomes.push_back(&part.outcome);
                positions.push_back(i);
            }
        }
        if (settings_.echo_to_stdout) echo(messages, positions);
        if (!requests.empty()) {
            Delivery delivery(*options_.transport, delivery_options_,
                              options_.clock != nullptr ? *options_.clock : system_clock());
            report = delivery.run(requests, outcomes, [&](std::size_t k) {
                const std::size_t i = positions[k];
                SendOutcome& outcome = messages[i].outcome;
                if (!outcome.parts.empty()) {
                    if (--parts_left[i] > 0) return;  // one emission, once every part is final
                    parts_->record(outcome);
                }
                ledger.emit(i);
            });
        }
    } catch (...) {
        ledger.emit_rest(std::current_exception());
        throw;
    }
    if (report.transport_broke()) {
        throw BrokenTransport(ledger.failures(), count, report.problem, report.cause);
    }
    if (!ledger.all_accepted() && !options_.fail_silently) {
        throw SendError(ledger.failures(), count);
    }
    return ledger.accepted();
}

SENDGRID_BACKEND_COMPILED void SendgridBackend::emit_outcome(const EmailMessage& message) const {
    if (options_.statuses) {
        try {
            options_.statuses->record(message);
        } catch (...) {
            report_handler_error(message, std::current_exception(), "BackendOptions::statuses");
        }
    }
    const bool fail_flag = !message.outcome.accepted();
    for (const auto& error : sendgrid_email_sent.send_robust(*this, message, fail_flag)) {
        report_handler_error(message, error, "sendgrid_email_sent handler");
    }
}
#endif  // SENDGRID_BACKEND_DEFINE_COMPILED

SENDGRID_BACKEND_NAMESPACE_END
