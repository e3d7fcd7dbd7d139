#pragma once

/// @file
/// `ScheduledSends`: SendGrid's batch ids and its Cancel Scheduled Sends API, through the same
/// `Settings` (host_url, api_key, timeouts, retry policy) and `Transport` as `SendgridBackend`.
/// A message sent with `send_at` and a `batch_id` can be paused, cancelled or resumed until it
/// goes out. Not in the umbrella header: only programs that schedule pay for it.
///
/// @code
/// #include <sendgrid_backend/scheduled_sends.hpp>
/// #include <sendgrid_backend/transport/curl.hpp>
///
/// sendgrid_backend::ScheduledSends scheduled(sendgrid_backend::Settings::from_env());
/// std::string batch = scheduled.create_batch_id();
/// // ... send mail whose mail/send payload has "send_at" and "batch_id": batch ...
/// scheduled.pause_scheduled(batch);   // held past send_at
/// scheduled.resume_scheduled(batch);  // goes out (at once, when send_at passed)
/// scheduled.cancel_scheduled(batch);  // discarded at send_at
/// @endcode
///
/// SendGrid pauses or cancels at most 10 batches at one time, and not within 10 minutes of
/// their send_at; it answers 400 then, which is thrown as `ScheduledSendsError`.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/api_errors.hpp"
#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/batch_id.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/detail/text/url.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/outcome_recording.hpp"
#include "sendgrid_backend/retry_policy.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// What a batch is set to hold: `pause` keeps its messages past send_at until resumed;
/// `cancel` discards them at send_at.
enum class ScheduledSendStatus { pause, cancel };

/// "pause" or "cancel", as SendGrid spells them.
constexpr const char* to_string(ScheduledSendStatus status) noexcept {
    return status == ScheduledSendStatus::cancel ? "cancel" : "pause";
}

/// One batch that is paused or cancelled.
struct ScheduledSend {
    std::string batch_id;
    ScheduledSendStatus status = ScheduledSendStatus::pause;
};

/// An argument SendGrid would refuse, found before anything was sent; `argument()` names it.
class InvalidArgument : public Error {
  public:
    InvalidArgument(std::string argument, const std::string& reason)
        : Error("sendgrid_backend.invalid_argument", argument + ": " + reason),
          argument_(std::move(argument)) {}

    const std::string& argument() const noexcept { return argument_; }

  private:
    std::string argument_;
};

/// A scheduled sends request that SendGrid refused (`http_status()` and its `errors()`), or that
/// got no answer (`transport_error()`). Its text never holds the API key.
class ScheduledSendsError : public Error {
  public:
    ScheduledSendsError(const std::string& what, int http_status, std::vector<ApiError> errors,
                        TransportError transport_error)
        : Error("sendgrid_backend.scheduled_sends_error", what),
          http_status_(http_status),
          errors_(std::move(errors)),
          transport_error_(transport_error) {}

    /// SendGrid's answer, e.g. 400; 0 when none arrived.
    int http_status() const noexcept { return http_status_; }
    const std::vector<ApiError>& errors() const noexcept { return errors_; }
    TransportError transport_error() const noexcept { return transport_error_; }

  private:
    int http_status_;
    std::vector<ApiError> errors_;
    TransportError transport_error_;
};

/// What a `ScheduledSends` is made with beyond its Settings.
struct ScheduledSendsOptions {
    /// Beats `Settings::api_key`.
    std::optional<std::string> api_key;
    /// The HTTP transport, e.g. the one given to a backend in `BackendOptions::transport`, to
    /// share its connections; null: the default.
    std::shared_ptr<Transport> transport;
    /// The clock retries wait on; null: the real one.
    Clock* clock = nullptr;
};

namespace detail {

/// `{"batch_id": "...", "status": "..."}` (other keys skipped); false when it is not that.
inline bool read_scheduled_send(JsonScanner& json, ScheduledSend& send, bool need_status) {
    if (!json.take('{')) return false;
    bool has_id = false;
    bool has_status = false;
    if (!json.take('}')) {
        std::string key;
        std::string text;
        for (;;) {
            if (!json.string(key) || !json.take(':')) return false;
            if ((key == "batch_id" || key == "status") && json.peek() == '"') {
                if (!json.string(text)) return false;
                if (key == "batch_id") {
                    send.batch_id = text;
                    has_id = true;
                } else if (text == "pause" || text == "cancel") {
                    send.status =
                        text == "pause" ? ScheduledSendStatus::pause : ScheduledSendStatus::cancel;
                    has_status = true;
                }
            } else if (!json.value()) {
                return false;
            }
            if (json.take('}')) break;
            if (!json.take(',')) return false;
        }
    }
    return has_id && (has_status || !need_status);
}

/// A JSON array of scheduled sends; nullopt when the text is not that.
inline std::optional<std::vector<ScheduledSend>> read_scheduled_sends(std::string_view body) {
    JsonScanner json(body);
    std::vector<ScheduledSend> sends;
    if (!json.take('[')) return std::nullopt;
    if (!json.take(']')) {
        for (;;) {
            ScheduledSend send;
            if (!read_scheduled_send(json, send, true)) return std::nullopt;
            sends.push_back(std::move(send));
            if (json.take(']')) break;
            if (!json.take(',')) return std::nullopt;
        }
    }
    if (!json.at_end()) return std::nullopt;
    return sends;
}

}  // namespace detail

/// Batch ids and the pause, cancel and resume of scheduled sends. See the file comment.
///
/// Each call is one request (two for pause, cancel and resume, which first read the batch's
/// state), retried as mail/send is: after a 429 or a connection that never reached SendGrid, as
/// `Settings::retry` allows. Thread safety: one object may be used from any number of threads.
class ScheduledSends {
  public:
    /// @throws ImproperlyConfigured naming the setting, as `SendgridBackend` does.
    explicit ScheduledSends(Settings settings = Settings::from_env(),
                            ScheduledSendsOptions options = {})
        : settings_(std::move(settings)), options_(std::move(options)) {
        if (options_.api_key) settings_.api_key = *options_.api_key;
        options_.api_key.reset();
        settings_.validate();
        detail::BaseUrl url;
        detail::base_url_problem(settings_.host_url, url);  // validate() accepted it
        api_url_ = url.scheme + "://" + url.host + (url.port.empty() ? "" : ":" + url.port) +
                   url.path + "/v3";
        if (!options_.transport) {
            const detail::TransportFactory factory = detail::default_transport_factory().load();
            if (factory == nullptr) {
                throw ImproperlyConfigured("ScheduledSendsOptions::transport",
                                           "none given and no default: include "
                                           "<sendgrid_backend/transport/curl.hpp> and link "
                                           "sendgrid_backend::curl, or pass a transport");
            }
            TransportOptions transport;
            transport.timeout = settings_.timeout;
            transport.connect_timeout = settings_.connect_timeout;
            transport.ca_bundle = settings_.ca_bundle;
            transport.max_idle_connection_age = settings_.max_idle_connection_age;
            options_.transport = factory(transport);
        }
        if (const std::string problem = options_.transport->url_problem(api_url_);
            !problem.empty()) {
            throw ImproperlyConfigured(
                "Settings::host_url",
                detail::quote_for_error(detail::url_for_error(settings_.host_url)) + " " + problem);
        }
    }

    /// A new batch id (POST /v3/mail/batch), to put in messages' `batch_id` before sending.
    /// @throws ScheduledSendsError when SendGrid refuses or does not answer.
    std::string create_batch_id() const {
        const HttpResponse response = call("POST", "/mail/batch", "", "create_batch_id");
        detail::JsonScanner json(response.body);
        ScheduledSend created;
        if (!detail::read_scheduled_send(json, created, false) || !json.at_end() ||
            !detail::batch_id_problem(created.batch_id).empty()) {
            throw unreadable("create_batch_id", response);
        }
        return created.batch_id;
    }

    /// Whether SendGrid knows `batch_id` (GET /v3/mail/batch/{batch_id}: 200 yes, 400 no).
    /// @throws InvalidArgument for a malformed id; ScheduledSendsError for other answers.
    bool batch_id_exists(const std::string& batch_id) const {
        check_batch_id(batch_id);
        const HttpResponse response =
            call("GET", "/mail/batch/" + batch_id, "", "batch_id_exists", {400, 404});
        return response.status == 200;
    }

    /// Holds the batch's messages past their send_at until `resume_scheduled`; a cancelled
    /// batch becomes paused.
    /// @throws InvalidArgument for a malformed id; ScheduledSendsError when SendGrid refuses
    ///         (an unknown batch, more than 10 batches paused or cancelled, too close to send_at).
    void pause_scheduled(const std::string& batch_id) const {
        set_status(batch_id, ScheduledSendStatus::pause, "pause_scheduled");
    }

    /// Discards the batch's messages at their send_at; `resume_scheduled` undoes it until then.
    /// @throws as `pause_scheduled`.
    void cancel_scheduled(const std::string& batch_id) const {
        set_status(batch_id, ScheduledSendStatus::cancel, "cancel_scheduled");
    }

    /// Removes a pause or cancel (DELETE /v3/user/scheduled_sends/{batch_id}): the batch is sent
    /// at send_at, or at once when that passed. Nothing to remove is not an error.
    /// @throws as `pause_scheduled`.
    void resume_scheduled(const std::string& batch_id) const {
        if (!read_status(batch_id, "resume_scheduled")) return;
        call("DELETE", "/user/scheduled_sends/" + batch_id, "", "resume_scheduled");
    }

    /// The pause or cancel set on `batch_id`; nullopt when none is.
    /// @throws as `pause_scheduled`.
    std::optional<ScheduledSendStatus> scheduled_status(const std::string& batch_id) const {
        return read_status(batch_id, "scheduled_status");
    }

    /// Every batch that is paused or cancelled (GET /v3/user/scheduled_sends).
    /// @throws ScheduledSendsError when SendGrid refuses or does not answer.
    std::vector<ScheduledSend> list_scheduled() const {
        const HttpResponse response = call("GET", "/user/scheduled_sends", "", "list_scheduled");
        auto sends = detail::read_scheduled_sends(response.body);
        if (!sends) throw unreadable("list_scheduled", response);
        return std::move(*sends);
    }

    /// The settings in effect (validated; the API key is the one in use).
    const Settings& settings() const noexcept { return settings_; }
    Transport& transport() const noexcept { return *options_.transport; }

  private:
    static void check_batch_id(const std::string& batch_id) {
        if (const std::string problem = detail::batch_id_problem(batch_id); !problem.empty()) {
            throw InvalidArgument("batch_id", problem);
        }
    }

    /// GET /v3/user/scheduled_sends/{batch_id}; errors name `operation`.
    std::optional<ScheduledSendStatus> read_status(const std::string& batch_id,
                                                   const char* operation) const {
        check_batch_id(batch_id);
        const HttpResponse response =
            call("GET", "/user/scheduled_sends/" + batch_id, "", operation);
        const auto sends = detail::read_scheduled_sends(response.body);
        if (!sends) throw unreadable(operation, response);
        for (const ScheduledSend& send : *sends) {
            if (send.batch_id == batch_id) return send.status;
        }
        return std::nullopt;
    }

    /// SendGrid sets a first pause or cancel with POST and changes it with PATCH (a POST on a
    /// batch that has one is refused), so the state is read first.
    void set_status(const std::string& batch_id, ScheduledSendStatus status,
                    const char* operation) const {
        const std::optional<ScheduledSendStatus> now = read_status(batch_id, operation);
        if (now == status) return;
        const std::string wire = to_string(status);
        if (now) {
            call("PATCH", "/user/scheduled_sends/" + batch_id, "{\"status\":\"" + wire + "\"}",
                 operation);
        } else {
            call("POST", "/user/scheduled_sends",
                 "{\"batch_id\":\"" + batch_id + "\",\"status\":\"" + wire + "\"}", operation);
        }
    }

    /// Sends one request, retrying as the policy allows, and returns a 2xx answer (or one whose
    /// status is in `also_fine`).
    HttpResponse call(const char* method, const std::string& path, std::string body,
                      const char* operation, std::vector<int> also_fine = {}) const {
        HttpRequest request;
        request.method = method;
        request.url = api_url_ + path;
        request.headers = {{"Authorization", "Bearer " + settings_.api_key}};
        if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
        request.body = std::move(body);
        Clock& clock = options_.clock != nullptr ? *options_.clock : system_clock();
        HttpResponse response;
        for (int tries = 1;; ++tries) {
            try {
                response = options_.transport->send(request);
            } catch (...) {
                std::string what = detail::describe_exception(std::current_exception());
                detail::redact(what, settings_.api_key);
                throw ScheduledSendsError(
                    std::string(operation) + ": the transport threw (" + what + ")", 0, {},
                    TransportError::exception);
            }
            const auto delay = retry_delay(settings_.retry, response, tries, clock.unix_now(),
                                           detail::jitter_fraction());
            if (!delay) break;
            clock.sleep_until(clock.now() + *delay);
        }
        const bool fine = (response.status >= 200 && response.status < 300) ||
                          (response.status != 0 && contains(also_fine, response.status));
        if (!fine) throw failure(operation, method, path, response);
        return response;
    }

    static bool contains(const std::vector<int>& statuses, int status) noexcept {
        for (int each : statuses) {
            if (each == status) return true;
        }
        return false;
    }

    /// The error for a refused or unanswered request, with SendGrid's messages and no key.
    ScheduledSendsError failure(const char* operation, const char* method, const std::string& path,
                                const HttpResponse& response) const {
        std::string what = std::string(operation) + ": " + method + " /v3" + path;
        std::vector<ApiError> errors;
        if (response.status != 0) {
            what += " answered HTTP " + std::to_string(response.status);
            errors = parse_api_errors(response.body);
            for (ApiError& error : errors) {
                detail::redact(error.message, settings_.api_key);
                detail::redact(error.field, settings_.api_key);
                detail::redact(error.help, settings_.api_key);
                what += "; " + (error.field.empty() ? std::string() : error.field + ": ") +
                        error.message;
            }
        } else {
            what += " got no answer (" + std::string(to_string(response.error)) +
                    (response.error_message.empty() ? "" : ": " + response.error_message) + ")";
        }
        detail::redact(what, settings_.api_key);
        return ScheduledSendsError(what, response.status, std::move(errors), response.error);
    }

    ScheduledSendsError unreadable(const char* operation, const HttpResponse& response) const {
        std::string what = std::string(operation) + ": SendGrid answered HTTP " +
                           std::to_string(response.status) + " with a body that is not the " +
                           "documented JSON";
        return ScheduledSendsError(what, response.status, {}, TransportError::bad_answer);
    }

    Settings settings_;
    ScheduledSendsOptions options_;
    std::string api_url_;  ///< e.g. "https://api.sendgrid.com/v3"
};

SENDGRID_BACKEND_NAMESPACE_END
