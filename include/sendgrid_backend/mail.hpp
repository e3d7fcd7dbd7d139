#pragma once

/// @file
/// `SendgridBackend`: sends `EmailMessage`s through SendGrid's v3 API and emits
/// `sendgrid_email_sent` exactly once per message, after its final attempt, on the caller's
/// thread (the counterpart of `sendgrid_backend.mail.SendgridBackend`).
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
#include <chrono>
#include <cstddef>
#include <ctime>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Receives each exception that a `sendgrid_email_sent` handler threw, with the message the
/// handler was called for. Called on the sending thread; must not throw.
using HandlerErrorHandler = std::function<void(const EmailMessage&, std::exception_ptr)>;

namespace detail {

/// The default HandlerErrorHandler: one line on stderr.
inline void log_handler_error(const EmailMessage&, std::exception_ptr error) {
    std::cerr << "[sendgrid_backend] a sendgrid_email_sent handler threw: "
              << describe_exception(error) << '\n';
}

/// SendGrid's `{"errors": [{"message", "field", "help"}]}`; empty when the body is not that.
inline std::vector<ApiError> parse_api_errors(const std::string& body) {
    std::vector<ApiError> errors;
    const nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
    if (!json.is_object() || !json.contains("errors") || !json["errors"].is_array()) return errors;
    for (const auto& item : json["errors"]) {
        if (!item.is_object()) continue;
        ApiError error;
        auto text = [&item](const char* key) -> std::string {
            if (!item.contains(key) || item[key].is_null()) return "";
            return item[key].is_string() ? item[key].get<std::string>() : item[key].dump();
        };
        error.message = text("message");
        error.field = text("field");
        error.help = text("help");
        errors.push_back(std::move(error));
    }
    return errors;
}

/// How long a 429 asks to wait: Retry-After seconds, else X-RateLimit-Reset (unix time).
inline std::optional<std::chrono::milliseconds> rate_limit_wait(const HttpResponse& response) {
    if (auto seconds = parse_decimal(trim(response.header("Retry-After")))) {
        return std::chrono::milliseconds(*seconds * 1000);
    }
    if (auto reset = parse_decimal(trim(response.header("X-RateLimit-Reset")))) {
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        return std::chrono::milliseconds(std::max<std::int64_t>(0, *reset - now) * 1000);
    }
    return std::nullopt;
}

inline std::mt19937_64& retry_random() {
    thread_local std::mt19937_64 random{std::random_device{}()};
    return random;
}

}  // namespace detail

/// What Django passes to a backend's constructor, plus the seams a C++ user wants.
struct BackendOptions {
    /// Django's fail_silently: no SendError; failures are still recorded and emitted.
    bool fail_silently = false;
    /// Beats `Settings::api_key` (django-sendgrid-v5's `api_key` argument).
    std::optional<std::string> api_key;
    /// The HTTP transport; null: the default one (libcurl, once transport/curl.hpp is
    /// included somewhere in the program).
    std::shared_ptr<Transport> transport;
    /// Where echo_to_stdout writes; null: std::cout.
    std::ostream* stream = nullptr;
    /// Receives exceptions thrown by sendgrid_email_sent handlers; null: one line on stderr.
    HandlerErrorHandler on_handler_error;
};

/// Sends email through SendGrid's v3 Web API. See the file comment for an example.
///
/// Thread safety: one backend may be shared by any number of threads; each `send_messages` call
/// works on its own messages. Construction throws `ImproperlyConfigured` for bad settings.
class SendgridBackend {
  public:
    using Settings = sendgrid_backend::Settings;

    using Options = BackendOptions;

    /// @throws ImproperlyConfigured when there is no API key, the host URL is not http(s), or
    ///         no transport is available.
    explicit SendgridBackend(Settings settings = Settings::from_env(), Options options = {})
        : settings_(std::move(settings)), options_(std::move(options)) {
        if (options_.api_key) settings_.api_key = *options_.api_key;
        options_.api_key.reset();  // one copy of the secret is enough
        if (detail::trim(settings_.api_key).empty()) {
            throw ImproperlyConfigured("SENDGRID_API_KEY",
                                       "is not set; set it or pass Options::api_key");
        }
        if (detail::has_line_break(settings_.api_key)) {
            throw ImproperlyConfigured("SENDGRID_API_KEY", "contains a line break");
        }
        std::string base = settings_.host_url;
        while (!base.empty() && base.back() == '/') base.pop_back();
        if (base.rfind("https://", 0) != 0 && base.rfind("http://", 0) != 0) {
            throw ImproperlyConfigured(
                "SENDGRID_HOST_URL",
                detail::quote_for_error(settings_.host_url) +
                    " must start with https:// (or http:// for a test server)");
        }
        send_url_ = base + "/v3/mail/send";
        if (!options_.transport) {
            detail::TransportFactory factory = detail::default_transport_factory().load();
            if (factory == nullptr) {
                throw ImproperlyConfigured("transport",
                                           "none given and no default: include "
                                           "<sendgrid_backend/transport/curl.hpp> and link "
                                           "sendgrid_backend::curl, or pass Options::transport");
            }
            options_.transport = factory(TransportOptions::from(settings_));
        }
        if (!options_.on_handler_error) options_.on_handler_error = &detail::log_handler_error;
        if (settings_.max_in_flight == 0) settings_.max_in_flight = 1;
        payload_options_.sandbox_mode = settings_.effective_sandbox_mode();
        payload_options_.track_email_opens = settings_.track_email_opens;
        payload_options_.track_clicks_html = settings_.track_clicks_html;
        payload_options_.track_clicks_plain = settings_.track_clicks_plain;
        payload_options_.deduplicate_recipients = settings_.deduplicate_recipients;
    }

    /// Sends every message, records each outcome on it and emits `sendgrid_email_sent` once per
    /// message (fail_flag false only when SendGrid accepted it), then returns how many were
    /// accepted. Up to `max_in_flight` requests are in flight at once; handlers run on this
    /// thread after all attempts.
    /// @throws SendError after everything was attempted and emitted, when a message failed and
    ///         fail_silently is off.
    std::size_t send_messages(std::vector<EmailMessage>& messages) const {
        return send_messages(messages.data(), messages.size());
    }

    /// The same for `count` messages starting at `messages`.
    std::size_t send_messages(EmailMessage* messages, std::size_t count) const {
        std::vector<PendingSend> pending;
        pending.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            if (auto request = prepare(messages[i])) {
                pending.push_back(PendingSend{i, std::move(*request)});
            }
        }
        if (settings_.echo_to_stdout) echo(messages, pending);
        deliver(messages, pending);

        std::size_t accepted = 0;
        std::vector<SendError::Failure> failures;
        for (std::size_t i = 0; i < count; ++i) {
            EmailMessage& message = messages[i];
            const bool fail_flag = !message.outcome.accepted();
            for (const auto& error : sendgrid_email_sent.send_robust(*this, message, fail_flag)) {
                report_handler_error(message, error);
            }
            if (fail_flag) {
                failures.push_back(SendError::Failure{i, message.outcome.status,
                                                      message.outcome.http_status,
                                                      message.outcome.failure_reason});
            } else {
                ++accepted;
            }
        }
        if (!failures.empty() && !options_.fail_silently) {
            throw SendError(std::move(failures), count);
        }
        return accepted;
    }

    /// Sends one message; returns whether SendGrid accepted it.
    bool send_message(EmailMessage& message) const { return send_messages(&message, 1) == 1; }

    /// The exact JSON this backend would POST for `message` (Django's `_build_sg_mail`).
    /// Pure: no I/O, no signal.
    /// @throws InvalidMessage naming the offending field.
    nlohmann::json build_payload(const EmailMessage& message) const {
        return sendgrid_backend::build_payload(message, payload_options_);
    }

    bool fail_silently() const noexcept { return options_.fail_silently; }
    /// Whether mail goes out in SendGrid's sandbox mode (validated, not delivered).
    bool sandbox_mode() const noexcept { return payload_options_.sandbox_mode; }
    /// The endpoint requests go to, e.g. "https://api.sendgrid.com/v3/mail/send".
    const std::string& send_url() const noexcept { return send_url_; }
    Transport& transport() const noexcept { return *options_.transport; }

  private:
    struct PendingSend {
        std::size_t index;
        HttpRequest request;
    };

    static void fail(EmailMessage& message, SendStatus status, std::string reason) {
        message.outcome.status = status;
        message.outcome.failure_reason = std::move(reason);
    }

    /// Runs the pre-send hook and builds the request; nullopt (outcome recorded) when the
    /// message is not to be sent.
    std::optional<HttpRequest> prepare(EmailMessage& message) const {
        message.outcome = SendOutcome{};
        try {
            sendgrid_pre_send.send(*this, message);
        } catch (const CancelSend& cancel) {
            fail(message, SendStatus::cancelled, "cancelled: " + cancel.reason());
            return std::nullopt;
        } catch (...) {
            fail(message, SendStatus::cancelled,
                 "cancelled: a sendgrid_pre_send handler threw: " +
                     detail::describe_exception(std::current_exception()));
            return std::nullopt;
        }
        HttpRequest request;
        try {
            request.body = build_payload(message).dump();
        } catch (const InvalidMessage& invalid) {
            fail(message, SendStatus::invalid, invalid.field() + ": " + invalid.reason());
            return std::nullopt;
        } catch (const nlohmann::json::exception& error) {
            // build_payload checks UTF-8 itself; this is a safety net, never a crash.
            fail(message, SendStatus::invalid, std::string("payload: ") + error.what());
            return std::nullopt;
        }
        if (request.body.size() > limits::max_payload_bytes) {
            fail(message, SendStatus::invalid,
                 "payload: the request is " + std::to_string(request.body.size()) +
                     " bytes; SendGrid accepts at most 30 MB");
            message.outcome.transport_error = TransportError::payload_too_large;
            return std::nullopt;
        }
        request.url = send_url_;
        request.headers = {{"Authorization", "Bearer " + settings_.api_key},
                           {"Content-Type", "application/json"},
                           {"Accept", "application/json"}};
        return request;
    }

    /// Sends the pending requests, retrying what may be retried, and records the outcomes.
    void deliver(EmailMessage* messages, std::vector<PendingSend>& pending) const {
        using clock = std::chrono::steady_clock;
        // The first round sends every request; later rounds only what is to be retried.
        std::vector<HttpRequest> requests;
        requests.reserve(pending.size());
        for (auto& send : pending) requests.push_back(std::move(send.request));
        std::vector<std::size_t> round(pending.size());
        for (std::size_t k = 0; k < round.size(); ++k) round[k] = k;
        std::vector<clock::time_point> first_started(pending.size());
        std::vector<HttpRequest> retry_requests;
        for (int attempt = 1; !round.empty(); ++attempt) {
            const clock::time_point round_started = clock::now();
            std::vector<HttpResponse> responses = options_.transport->send_batch(
                attempt == 1 ? requests : retry_requests, settings_.max_in_flight);
            const clock::time_point round_finished = clock::now();

            std::vector<std::size_t> retry;
            std::chrono::milliseconds wait{0};
            for (std::size_t k = 0; k < round.size(); ++k) {
                const std::size_t slot = round[k];
                HttpResponse& response = responses.at(k);
                // A transport may leave the time points unset; the round's bounds stand in.
                if (response.started == clock::time_point{}) response.started = round_started;
                if (response.finished == clock::time_point{}) response.finished = round_finished;
                if (attempt == 1) first_started[slot] = response.started;
                record(messages[pending[slot].index], response, attempt, first_started[slot]);
                if (auto delay = retry_delay(response, attempt)) {
                    retry.push_back(slot);
                    wait = std::max(wait, *delay);
                }
            }
            if (!retry.empty() && wait.count() > 0) std::this_thread::sleep_for(wait);
            retry_requests.clear();
            for (std::size_t slot : retry) retry_requests.push_back(requests[slot]);
            round = std::move(retry);
        }
    }

    static void record(EmailMessage& message, const HttpResponse& response, int attempt,
                       std::chrono::steady_clock::time_point first_started) {
        SendOutcome& outcome = message.outcome;
        outcome.attempts = attempt;
        outcome.duration = response.finished - first_started;
        outcome.http_status = response.status;
        outcome.transport_error = response.error;
        outcome.errors.clear();
        outcome.message_id.clear();
        if (response.error != TransportError::none) {
            outcome.status = SendStatus::transport_failed;
            outcome.failure_reason =
                std::string(to_string(response.error)) + ": " + response.error_message;
        } else if (response.status >= 200 && response.status < 300) {
            outcome.status = SendStatus::accepted;
            outcome.message_id = std::string(response.header("X-Message-Id"));
            outcome.failure_reason.clear();
        } else {
            outcome.status = SendStatus::rejected;
            outcome.errors = detail::parse_api_errors(response.body);
            outcome.failure_reason = "HTTP " + std::to_string(response.status);
            for (const auto& error : outcome.errors) {
                outcome.failure_reason += "; " + error.message;
                if (!error.field.empty()) outcome.failure_reason += " (" + error.field + ")";
            }
        }
    }

    /// How long to wait before trying `response`'s request again, or nullopt when it must not
    /// be retried (accepted, a 4xx other than 429, an ambiguous timeout, attempts used up).
    std::optional<std::chrono::milliseconds> retry_delay(const HttpResponse& response,
                                                         int attempt) const {
        const RetryPolicy& policy = settings_.retry;
        if (attempt >= policy.max_attempts) return std::nullopt;
        const bool rate_limited = response.error == TransportError::none && response.status == 429;
        const bool not_sent = response.error == TransportError::connection_failed;
        const bool server_error = response.error == TransportError::none &&
                                  (response.status == 500 || response.status == 502 ||
                                   response.status == 503 || response.status == 504);
        if (!rate_limited && !not_sent && !(server_error && policy.retry_server_errors)) {
            return std::nullopt;
        }
        if (rate_limited) {
            if (auto asked = detail::rate_limit_wait(response)) {
                return std::min(*asked, policy.max_retry_after);
            }
        }
        double backoff = static_cast<double>(policy.initial_backoff.count());
        for (int i = 1; i < attempt; ++i) backoff *= policy.multiplier;
        backoff = std::min(backoff, static_cast<double>(policy.max_backoff.count()));
        const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
        std::uniform_real_distribution<double> spread(backoff * (1.0 - jitter), backoff);
        return std::chrono::milliseconds(static_cast<long long>(spread(detail::retry_random())));
    }

    void report_handler_error(const EmailMessage& message, const std::exception_ptr& error) const {
        try {
            options_.on_handler_error(message, error);
        } catch (...) {
            // An error handler that throws must not take the batch down with it.
        }
    }

    /// Writes each message about to be sent to the echo stream, as the original's
    /// SENDGRID_ECHO_TO_STDOUT does (a readable rendering, not the raw MIME).
    void echo(const EmailMessage* messages, const std::vector<PendingSend>& pending) const {
        std::ostream& out = options_.stream != nullptr ? *options_.stream : std::cout;
        std::lock_guard<std::mutex> lock(echo_mutex_);
        auto join = [](const std::vector<std::string>& list) {
            std::string joined;
            for (const auto& item : list) joined += (joined.empty() ? "" : ", ") + item;
            return joined;
        };
        for (const PendingSend& send : pending) {
            const EmailMessage& message = messages[send.index];
            out << "From: " << message.from_email << '\n';
            if (!message.to.empty()) out << "To: " << join(message.to) << '\n';
            if (!message.cc.empty()) out << "Cc: " << join(message.cc) << '\n';
            if (!message.reply_to.empty()) out << "Reply-To: " << join(message.reply_to) << '\n';
            out << "Subject: " << message.subject << '\n';
            for (const auto& [name, value] : message.extra_headers) {
                out << name << ": " << value << '\n';
            }
            out << "Content-Type: text/" << message.content_subtype << "; charset=utf-8\n\n"
                << message.body << '\n';
            for (const auto& alternative : message.alternatives) {
                out << "[alternative " << alternative.mimetype << ", " << alternative.content.size()
                    << " bytes]\n";
            }
            for (const auto& attachment : message.attachments) {
                out << "[attachment " << attachment.filename << ", " << attachment.content.size()
                    << " bytes]\n";
            }
            out << std::string(79, '-') << '\n';
            out.flush();
        }
    }

    Settings settings_;
    Options options_;
    PayloadOptions payload_options_;
    std::string send_url_;
    mutable std::mutex echo_mutex_;
};

SENDGRID_BACKEND_NAMESPACE_END
