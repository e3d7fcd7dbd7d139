#pragma once

/// @file
/// `testing::FakeSendgridServer`: a real HTTP server on 127.0.0.1 (an ephemeral port) that
/// speaks the `POST /v3/mail/send` contract, for tests, examples and benchmarks. Link
/// `sendgrid_backend::testing` (cpp-httplib).
///
/// It checks the bearer key, the content type and the JSON; validates the request as SendGrid
/// does (required fields, limits, content order, unique recipients); answers 202 with a unique
/// X-Message-Id (200 in sandbox mode) or SendGrid-style `{"errors": [...]}`; records what it
/// received (`received()`, `sent()`, and `GET /__requests` for clients in other languages); and
/// injects faults on demand: any status (400, 401, 403, 413, 429 with rate-limit headers, 500,
/// 503), delays, and closing the connection in the middle of the answer, for the next request
/// or for the requests to one recipient (a batch sends several at once, so "the next request"
/// is whichever arrives first).
///
/// After a 202 it plays SendGrid's part (an independent implementation of SendGrid's side: it
/// shares the signer with the library, never its status rules). Each recipient gets the
/// events of the first matching `EventRule` (fake_events.hpp; built in: bounce@… bounces, else
/// processed + delivered), fired when send_at has come and the message's batch is neither
/// paused nor cancelled (`FakeScheduledSends`, whose API it serves), recorded for
/// `GET /__messages[?q=]`, `GET /__messages/{id}` and the mail viewer page at `GET /`, and,
/// with `FakeServerOptions::webhook_url`, POSTed there in batches signed like SendGrid's
/// (`WebhookClient`; verify with `webhook_public_key()`). `POST /__events` fires one on demand
/// (an open, a click). send_at more than 72 hours ahead and an unknown batch_id are refused
/// with 400, as SendGrid does.
///
/// @code
/// sendgrid_backend::testing::FakeSendgridServer server;          // listening on return
/// SendgridBackend backend(server.settings());                  // its URL and key, defaults else
/// server.push_fault(Fault(429));                                 // the next request gets 429
/// server.push_fault(Fault(400).for_recipient("bounce@example.com"));
/// server.sent().assert_sent_to("jane@example.com");
///
/// FakeServerOptions options;                                     // events to a receiver
/// options.webhook_url = "http://127.0.0.1:8080/events";
/// sendgrid_backend::testing::FakeSendgridServer events(options);
/// receiver_options.public_key = events.webhook_public_key();
/// @endcode

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/testing/fake_events.hpp"
#include "sendgrid_backend/testing/fake_messages.hpp"
#include "sendgrid_backend/testing/fake_scheduled_sends.hpp"
#include "sendgrid_backend/testing/mail_viewer_page.hpp"
#include "sendgrid_backend/testing/sent_mail.hpp"
#include "sendgrid_backend/testing/webhook_client.hpp"
#include "sendgrid_backend/testing/webhook_signer.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// One request as the server saw it.
struct ReceivedRequest {
    HttpHeaders headers;
    std::string body;         ///< after gzip decoding
    nlohmann::json payload;   ///< discarded (null) when the body was not JSON
    int answered_status = 0;  ///< 0 while the answer is still being prepared
    std::string message_id;   ///< the X-Message-Id it answered with, if any
    /// When the whole request had arrived (the system clock, to compare with send times).
    std::chrono::system_clock::time_point received_at;

    /// The request's mail, for SentMail's helpers (recipients, subject).
    SentMail mail() const { return SentMail{payload, headers, message_id}; }
};

/// A fault for the next `times` requests, or for the next `times` requests that `matches`
/// accepts. Faults are taken in the order they were pushed; a request gets the first one that
/// applies to it.
struct Fault {
    int status =
        0;  ///< answer with this status and a SendGrid-style error body; 0: answer normally
    std::chrono::milliseconds delay{0};      ///< wait this long before answering
    bool drop_connection = false;            ///< send part of the answer, then close the connection
    std::optional<int> retry_after_seconds;  ///< a Retry-After header (with 429)
    int times = 1;
    /// Which requests the fault is for; empty: any (the next ones).
    std::function<bool(const ReceivedRequest&)> matches;

    Fault() = default;
    /// A fault that answers `status_` (with SendGrid's error body for it).
    explicit Fault(int status_) : status(status_) {}

    /// Only for requests with `address` among their recipients (to, cc or bcc, any case).
    Fault& for_recipient(std::string address) {
        matches = [address = std::move(address)](const ReceivedRequest& request) {
            return SentMail::payload_is_for(request.payload, address);
        };
        return *this;
    }
    /// Only for requests `predicate` accepts (called under the server's lock: it must not call
    /// the server).
    Fault& when(std::function<bool(const ReceivedRequest&)> predicate) {
        matches = std::move(predicate);
        return *this;
    }
};

/// What a FakeSendgridServer answered since it started. Unlike `received()`, kept by
/// `clear_received()`: counts that only grow, for Prometheus counters.
struct FakeServerTotals {
    std::map<int, std::uint64_t> answered;  ///< requests by the status answered (or begun)
    std::uint64_t dropped_connections = 0;  ///< answers cut off by a `drop` fault
};

/// How a FakeSendgridServer listens.
struct FakeServerOptions {
    std::string api_key = "SG.fake-test-key.0123456789";
    int port = 0;  ///< 0: any free port on 127.0.0.1
    std::size_t worker_threads = 32;
    /// Called for each request once it was answered (e.g. to log it); on a server thread.
    std::function<void(const ReceivedRequest&)> on_request;
    /// Where to POST the signed Event Webhook batches (http://HOST:PORT/PATH); empty: events
    /// are only recorded (`GET /__messages/{id}`).
    std::string webhook_url;
    /// How the webhook client batches, retries and misbehaves (its `url` is webhook_url).
    WebhookClientOptions webhook;
    /// Which events each recipient gets; the first matching rule wins, then the built-in ones
    /// (bounce@, blocked@, dropped@, deferred@, spamreport@; else processed + delivered).
    std::vector<EventRule> event_rules;
    /// Keep at most this many accepted messages (the oldest go first); none: all of them.
    std::optional<std::size_t> max_messages;
};

namespace detail {

inline nlohmann::json error_body(const std::string& message,
                                 const nlohmann::json& field = nullptr) {
    return {{"errors", {{{"message", message}, {"field", field}, {"help", nullptr}}}}};
}

/// SendGrid's own checks of a mail/send body that a client can get wrong; empty when valid.
inline nlohmann::json validate_mail_send(const nlohmann::json& body) {
    nlohmann::json errors = nlohmann::json::array();
    auto error = [&errors](const std::string& message, const nlohmann::json& field) {
        errors.push_back({{"message", message}, {"field", field}, {"help", nullptr}});
    };
    // The name is not checked: SendGrid takes any string there, ',' and ';' included.
    auto is_address = [](const nlohmann::json& value) {
        if (!value.is_object() || !value.contains("email") || !value["email"].is_string()) {
            return false;
        }
        const std::string& email = value["email"].get_ref<const std::string&>();
        const auto at = email.find('@');
        return at != std::string::npos && at > 0 && email.find('.', at) != std::string::npos &&
               email.find_first_of(" \r\n<>") == std::string::npos;
    };
    if (!body.is_object()) {
        error("Bad Request", nullptr);
        return errors;
    }
    if (!body.contains("from") || !is_address(body["from"])) {
        error("The from email does not contain a valid address.", "from.email");
    }
    const bool has_template = body.contains("template_id") && body["template_id"].is_string() &&
                              !body["template_id"].get_ref<const std::string&>().empty();
    const auto& personalizations =
        body.contains("personalizations") ? body["personalizations"] : nlohmann::json();
    bool every_personalization_has_subject = true;
    if (!personalizations.is_array() || personalizations.empty()) {
        error(
            "The personalizations field is required and must have at least one "
            "personalization.",
            "personalizations");
    } else if (personalizations.size() > 1000) {
        error("The personalizations field must have at most 1000 personalizations.",
              "personalizations");
    } else {
        std::size_t recipients = 0;
        for (std::size_t i = 0; i < personalizations.size(); ++i) {
            const auto& p = personalizations[i];
            const std::string prefix = "personalizations." + std::to_string(i);
            if (!p.is_object() || !p.contains("to") || !p["to"].is_array() || p["to"].empty()) {
                error(
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                    prefix + ".to");
                continue;
            }
            if (!p.contains("subject")) every_personalization_has_subject = false;
            std::set<std::string> seen;
            for (const char* list : {"to", "cc", "bcc"}) {
                if (!p.contains(list)) continue;
                for (std::size_t k = 0; k < p[list].size(); ++k) {
                    const auto& address = p[list][k];
                    const std::string field = prefix + "." + list + "." + std::to_string(k);
                    if (!is_address(address)) {
                        error("Does not contain a valid address.", field + ".email");
                        continue;
                    }
                    ++recipients;
                    const auto email = sendgrid_backend::detail::to_lower_ascii(
                        address["email"].get_ref<const std::string&>());
                    if (!seen.insert(email).second) {
                        error(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance "
                            "of [" +
                                email + "] in the personalizations." + std::to_string(i) + "." +
                                list + " field.",
                            prefix);
                    }
                }
            }
            if (p.contains("headers") && p["headers"].is_object()) {
                for (const auto& [name, value] : p["headers"].items()) {
                    const std::string lower = sendgrid_backend::detail::to_lower_ascii(name);
                    for (const char* reserved :
                         {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                          "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc",
                          "bcc"}) {
                        if (lower == reserved) {
                            error("The header " + name + " is reserved.", prefix + ".headers");
                        }
                    }
                    if (!value.is_string())
                        error("Header values must be strings.", prefix + ".headers");
                }
            }
        }
        if (recipients > 1000) {
            error("The combined number of recipients in the personalizations exceeds 1000.",
                  "personalizations");
        }
    }
    if (!has_template && !every_personalization_has_subject &&
        !(body.contains("subject") && body["subject"].is_string() &&
          !body["subject"].get_ref<const std::string&>().empty())) {
        error(
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject "
            "defined.",
            "subject");
    }
    if (!has_template) {
        const auto& content = body.contains("content") ? body["content"] : nlohmann::json();
        if (!content.is_array() || content.empty()) {
            error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content");
        } else {
            for (std::size_t i = 0; i < content.size(); ++i) {
                const auto& part = content[i];
                if (!part.is_object() || !part.contains("value") || !part["value"].is_string() ||
                    part["value"].get_ref<const std::string&>().empty()) {
                    error("The content value must be a string at least one character in length.",
                          "content." + std::to_string(i) + ".value");
                }
                if (i > 0 && part.is_object() && part.value("type", "") == "text/plain") {
                    error(
                        "If present, text/plain must be first, followed by text/html, followed "
                        "by any other content.",
                        "content");
                }
            }
        }
    }
    if (body.contains("categories")) {
        const auto& categories = body["categories"];
        if (!categories.is_array() || categories.size() > 10) {
            error("Too many categories. There may be no more than 10 categories.", "categories");
        } else {
            for (const auto& category : categories) {
                if (!category.is_string() || category.get_ref<const std::string&>().size() > 255) {
                    error("A category cannot be more than 255 characters.", "categories");
                }
            }
        }
    }
    if (body.contains("asm") && !(body["asm"].is_object() && body["asm"].contains("group_id") &&
                                  body["asm"]["group_id"].is_number_integer())) {
        error("The asm.group_id is required and must be an integer.", "asm.group_id");
    }
    return errors;
}

}  // namespace detail

/// See the file comment. Starts listening in the constructor; stops and joins its thread in the
/// destructor. Every member is safe to call from any thread.
class FakeSendgridServer {
  public:
    /// Largest body accepted before answering 413, as SendGrid: 30 MB.
    static constexpr std::size_t max_body_bytes = 30'000'000;

    explicit FakeSendgridServer(std::string api_key = "SG.fake-test-key.0123456789",
                                std::size_t worker_threads = 32)
        : FakeSendgridServer(options_with(std::move(api_key), worker_threads)) {}

    /// @throws TestingSetupError when the port cannot be bound or the server does not start.
    explicit FakeSendgridServer(FakeServerOptions options)
        : api_key_(std::move(options.api_key)),
          on_request_(std::move(options.on_request)),
          event_rules_(std::move(options.event_rules)),
          signer_(std::make_shared<const WebhookSigner>()),
          store_(options.max_messages) {
        if (!options.webhook_url.empty()) {
            options.webhook.url = options.webhook_url;
            webhook_ = std::make_unique<WebhookClient>(options.webhook, signer_);
        }
        const std::size_t worker_threads = options.worker_threads;
        server_.new_task_queue = [worker_threads] {
            return new httplib::ThreadPool(worker_threads);
        };
        server_.set_keep_alive_max_count(100000);
        server_.set_payload_max_length(2 * max_body_bytes);
        server_.Post("/v3/mail/send",
                     [this](const httplib::Request& request, httplib::Response& response) {
                         handle(request, response);
                     });
        server_.Get("/__requests", [this](const httplib::Request&, httplib::Response& response) {
            response.set_content(received_json().dump(2), "application/json");
        });
        server_.Delete("/__requests", [this](const httplib::Request&, httplib::Response& response) {
            clear_received();
            response.status = 204;
        });
        add_event_routes();
        // The page and the /__ endpoints answer only requests addressed to this server by a
        // loopback name: a web page elsewhere could otherwise reach them by DNS rebinding.
        server_.set_pre_routing_handler(
            [this](const httplib::Request& request, httplib::Response& response) {
                const bool local = request.path == "/" || request.path.rfind("/__", 0) == 0;
                if (!local || addressed_to_loopback(request.get_header_value("Host"))) {
                    return httplib::Server::HandlerResponse::Unhandled;
                }
                answer_json(response, 403,
                            detail::error_body("the page and /__ endpoints answer only Host "
                                               "127.0.0.1:<port> or localhost:<port>",
                                               "Host"));
                return httplib::Server::HandlerResponse::Handled;
            });
        scheduled_.on_change([this](const std::string&, ScheduledState) {
            {
                std::lock_guard<std::mutex> lock(events_mutex_);
                work_arrived_ = true;
            }
            events_changed_.notify_all();
        });
        scheduled_.register_routes(
            server_, [this](const httplib::Request& request, httplib::Response& response) {
                if (request.get_header_value("Authorization") == "Bearer " + api_key_) return true;
                answer_json(response, 401,
                            detail::error_body("The provided authorization grant is invalid, "
                                               "expired, or revoked"));
                return false;
            });
        // cpp-httplib listens with a backlog of 5: a burst of new connections (a batch opening
        // 16 at once) would lose SYNs and stall a second each. Keep the socket, widen it below.
        server_.set_socket_options([this](socket_t socket) {
            httplib::default_socket_options(socket);
            listen_socket_ = socket;
        });
        if (options.port == 0) {
            port_ = server_.bind_to_any_port("127.0.0.1");
        } else if (server_.bind_to_port("127.0.0.1", options.port)) {
            port_ = options.port;
        }
        if (port_ <= 0) {
            throw TestingSetupError(
                "FakeSendgridServer: cannot bind 127.0.0.1" +
                (options.port == 0 ? std::string() : ":" + std::to_string(options.port)));
        }
        ::listen(listen_socket_, 1024);  // Linux: listening again only changes the backlog
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        // httplib's stop() does nothing until the accept loop runs: wait for it, so that
        // destroying a server right after constructing it cannot hang.
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!server_.is_running()) {
            if (std::chrono::steady_clock::now() > give_up) {
                server_.stop();
                thread_.join();
                throw TestingSetupError("FakeSendgridServer: the server did not start");
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        // Started last: a constructor that throws leaves no thread of its own running.
        dispatcher_ = std::thread([this] { dispatch_events(); });
    }

    ~FakeSendgridServer() { stop(); }

    FakeSendgridServer(const FakeSendgridServer&) = delete;
    FakeSendgridServer& operator=(const FakeSendgridServer&) = delete;

    /// Stops listening, then firing events, then the webhook client (which gives what it
    /// still holds a bounded time, WebhookClientOptions::stop_budget); idempotent.
    void stop() {
        server_.stop();
        if (thread_.joinable()) thread_.join();
        {
            std::lock_guard<std::mutex> lock(events_mutex_);
            stopping_events_ = true;
        }
        events_changed_.notify_all();
        if (dispatcher_.joinable()) dispatcher_.join();
        if (webhook_) webhook_->stop();
    }

    /// "http://127.0.0.1:<port>": the value for Settings::host_url.
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    int port() const noexcept { return port_; }
    /// The key requests must carry as `Authorization: Bearer <key>`.
    const std::string& api_key() const noexcept { return api_key_; }
    /// Settings that send to this server: `host_url` and `api_key` set, everything else at its
    /// default (change timeouts, retries or `max_in_flight` on the copy).
    Settings settings() const {
        Settings settings;
        settings.host_url = url();
        settings.api_key = api_key_;
        return settings;
    }

    /// Queues a fault (after the faults already queued). See `Fault`.
    void push_fault(Fault fault) {
        std::lock_guard<std::mutex> lock(mutex_);
        faults_.push_back(fault);
    }

    /// Delays every answer by `delay` (on top of any fault's delay).
    void set_delay(std::chrono::milliseconds delay) { delay_ms_ = delay.count(); }

    /// Every request received so far, in arrival order.
    std::vector<ReceivedRequest> received() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return received_;
    }
    std::size_t received_count() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return received_.size();
    }
    /// Waits until at least `count` requests arrived, or `timeout` passed; returns whether they
    /// did. For a client that gave up before the server answered.
    bool wait_for_requests(std::size_t count,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
        const auto give_up = std::chrono::steady_clock::now() + timeout;
        while (received_count() < count) {
            if (std::chrono::steady_clock::now() > give_up) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }
    /// The mail the server accepted (answered 2xx), in arrival order, for assertions.
    SentMails sent() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<SentMail> mails;
        for (const auto& request : received_) {
            if (request.answered_status >= 200 && request.answered_status < 300) {
                mails.push_back(request.mail());
            }
        }
        return SentMails(std::move(mails));
    }

    /// What `GET /__requests` answers: each request's payload, status and message id, and its
    /// headers with the Authorization value hidden.
    nlohmann::json received_json() const {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& request : received()) {
            nlohmann::json headers = nlohmann::json::object();
            for (const auto& [name, value] : request.headers) {
                headers[name] = sendgrid_backend::detail::iequals(name, "Authorization")
                                    ? std::string("[hidden]")
                                    : value;
            }
            list.push_back({{"headers", headers},
                            {"payload", request.payload},
                            {"status", request.answered_status},
                            {"message_id", request.message_id}});
        }
        return list;
    }

    /// Totals since the server started (see FakeServerTotals).
    FakeServerTotals totals() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return totals_;
    }

    /// Forget recorded requests, the accepted messages and their events (queued faults stay;
    /// totals() too).
    void clear_received() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            received_.clear();
        }
        std::lock_guard<std::mutex> lock(events_mutex_);
        store_.clear();
    }

    /// The key that verifies the webhook's signatures, as SendGrid's settings page shows it
    /// (base64 of DER SubjectPublicKeyInfo): WebhookOptions::public_key of a receiver.
    std::string webhook_public_key() const { return signer_->public_key_base64(); }
    /// What the webhook client did (all zero without a webhook).
    WebhookClientTotals webhook_totals() const {
        return webhook_ ? webhook_->totals() : WebhookClientTotals{};
    }
    /// Waits until the webhook client holds nothing (queued, retried or on the wire), or
    /// `timeout` passed; true at once without a webhook.
    bool wait_for_webhook_idle(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
        return !webhook_ || webhook_->wait_until_idle(timeout);
    }
    /// The scheduled sends API's state (batches, paused and cancelled sends).
    FakeScheduledSends& scheduled_sends() noexcept { return scheduled_; }

    /// What `GET /__messages?q=` answers (see the contract in the file comment).
    nlohmann::json messages_json(std::string_view query = {}) const {
        std::lock_guard<std::mutex> lock(events_mutex_);
        return store_.list_json(query, cancelled_batch());
    }
    /// What `GET /__messages/{id}` answers; null for an unknown id.
    nlohmann::json message_json(std::string_view message_id) const {
        std::lock_guard<std::mutex> lock(events_mutex_);
        const StoredMessage* message = store_.find(message_id);
        return message ? detail::MessageStore::detail_json(*message, cancelled_batch())
                       : nlohmann::json();
    }
    /// Waits until the message `message_id` recorded at least `count` events, or `timeout`
    /// passed; returns whether it did.
    bool wait_for_events(const std::string& message_id, std::size_t count,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
        std::unique_lock<std::mutex> lock(events_mutex_);
        return events_changed_.wait_for(lock, timeout, [&] {
            const StoredMessage* message = store_.find(message_id);
            return message && message->events.size() >= count;
        });
    }

  private:
    detail::MessageStore::CancelledBatch cancelled_batch() const {
        return [this](const std::string& batch_id) {
            return scheduled_.state(batch_id) == ScheduledState::cancel;
        };
    }

    static std::int64_t unix_now() {
        return std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    /// Whether `host` (a Host header) names this server by a loopback name.
    bool addressed_to_loopback(const std::string& host) const {
        for (const char* name : {"127.0.0.1", "localhost"}) {
            if (host == name || host == std::string(name) + ":" + std::to_string(port_)) {
                return true;
            }
        }
        return false;
    }

    void add_event_routes() {
        server_.Get("/", [](const httplib::Request&, httplib::Response& response) {
            response.set_content(std::string(detail::mail_viewer_html()),
                                 "text/html; charset=utf-8");
            // Only the page's own script runs; the mail's HTML (in a sandboxed frame) cannot
            // load or run anything.
            response.set_header("Content-Security-Policy",
                                std::string(detail::mail_viewer_content_security_policy()));
        });
        server_.Get("/__messages",
                    [this](const httplib::Request& request, httplib::Response& response) {
                        answer_json(response, 200, messages_json(request.get_param_value("q")));
                    });
        server_.Get(R"(/__messages/([^/]+))",
                    [this](const httplib::Request& request, httplib::Response& response) {
                        const nlohmann::json message = message_json(request.matches[1].str());
                        if (message.is_null()) {
                            answer_json(response, 404, detail::error_body("no such message"));
                        } else {
                            answer_json(response, 200, message);
                        }
                    });
        server_.Get(R"(/__messages/([^/]+)/attachments/(\d+))",
                    [this](const httplib::Request& request, httplib::Response& response) {
                        serve_attachment(request.matches[1].str(), request.matches[2].str(),
                                         response);
                    });
        server_.Post(
            "/__events", [this](const httplib::Request& request, httplib::Response& response) {
                // JSON only: a form or text/plain post from another site's page
                // (which a browser sends without asking) is not taken.
                if (request.get_header_value("Content-Type").rfind("application/json", 0) != 0) {
                    answer_json(response, 415,
                                detail::error_body("Content-Type should be application/json."));
                    return;
                }
                fire_on_demand(request.body, response);
            });
    }

    void serve_attachment(const std::string& message_id, const std::string& index_text,
                          httplib::Response& response) {
        std::lock_guard<std::mutex> lock(events_mutex_);
        const StoredMessage* message = store_.find(message_id);
        if (!message) {
            answer_json(response, 404, detail::error_body("no such message"));
            return;
        }
        const auto& attachments = message->payload.value("attachments", nlohmann::json::array());
        const std::size_t index =
            index_text.size() > 6 ? attachments.size() : std::stoul(index_text);
        if (!attachments.is_array() || index >= attachments.size()) {
            answer_json(response, 404, detail::error_body("no such attachment"));
            return;
        }
        const auto& attachment = attachments[index];
        std::string filename = attachment.value("filename", "attachment");
        for (char& c : filename) {
            if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '_';
        }
        response.set_header("Content-Disposition", "attachment; filename=\"" + filename + "\"");
        // Served beside the page: never sniffed or rendered as anything but a download.
        response.set_header("X-Content-Type-Options", "nosniff");
        response.set_header("Content-Security-Policy", "sandbox; default-src 'none'");
        response.set_content(detail::attachment_bytes(attachment),
                             attachment.value("type", "application/octet-stream"));
    }

    /// POST /__events: fires one event for one recipient now (an open or a click, say).
    void fire_on_demand(const std::string& body, httplib::Response& response) {
        const nlohmann::json request = sendgrid_backend::detail::parse_json_text(body);
        if (request.is_discarded() || !request.is_object() ||
            !request.value("message_id", nlohmann::json()).is_string() ||
            !request.value("email", nlohmann::json()).is_string() ||
            !request.value("event", nlohmann::json()).is_string()) {
            answer_json(response, 400,
                        detail::error_body("expected a JSON object with the strings "
                                           "message_id, email and event"));
            return;
        }
        const std::string name = request["event"].get<std::string>();
        if (!is_fake_event_name(name)) {
            answer_json(response, 400,
                        detail::error_body("unknown event '" + name +
                                               "' (processed, delivered, deferred, bounce, "
                                               "blocked, dropped, open, click, spamreport, "
                                               "unsubscribe, group_unsubscribe)",
                                           "event"));
            return;
        }
        const std::string url = request.value("url", nlohmann::json()).is_string()
                                    ? request["url"].get<std::string>()
                                    : std::string();
        nlohmann::json fired = nlohmann::json::array();
        {
            std::lock_guard<std::mutex> lock(events_mutex_);
            StoredMessage* message = store_.find(request["message_id"].get<std::string>());
            if (!message) {
                answer_json(response, 404, detail::error_body("no such message", "message_id"));
                return;
            }
            StoredRecipient* recipient = nullptr;
            for (auto& candidate : message->recipients) {
                if (sendgrid_backend::detail::iequals(candidate.subject.email,
                                                      request["email"].get<std::string>())) {
                    recipient = &candidate;
                    break;  // the first, as the page lists them
                }
            }
            if (!recipient) {
                answer_json(response, 404,
                            detail::error_body("no such recipient of that message", "email"));
                return;
            }
            fired.push_back(fire(*message, *recipient, name, url));
        }
        events_changed_.notify_all();
        answer_json(response, 202, {{"events", fired}});
    }

    /// Fires `name` for `recipient` now: recorded, and posted when there is a webhook. Called
    /// with events_mutex_ held, so that events leave in the order they were fired.
    nlohmann::json fire(StoredMessage& message, StoredRecipient& recipient, std::string_view name,
                        const std::string& url = {}) {
        nlohmann::json event = detail::make_event(name, recipient.subject, unix_now(), url);
        message.events.push_back(event);
        recipient.status = detail::status_after(event);
        if (webhook_) webhook_->post(event);
        return event;
    }

    /// Fires the planned events of every message that is due: its send_at passed and its
    /// batch is neither paused nor cancelled (a cancelled batch's are discarded at send_at, as
    /// SendGrid does: until then the cancel can be taken back). Step by step across recipients
    /// (every "processed" before any "delivered"). Whether any waits still.
    bool fire_due_events() {
        bool still_waiting = false;
        const std::int64_t now = unix_now();
        // A recipient's events wait for its own send_at (its personalization's, or the mail's).
        auto due = [now](const StoredRecipient& recipient) {
            return !recipient.send_at || *recipient.send_at <= now;
        };
        for (auto& message : store_.messages()) {
            if (!message.waiting()) continue;
            const ScheduledState state = message.batch_id.empty()
                                             ? ScheduledState::none
                                             : scheduled_.state(message.batch_id);
            if (state == ScheduledState::cancel) {
                for (auto& recipient : message.recipients) {
                    if (due(recipient)) {
                        message.cancelled = true;
                        recipient.planned.clear();
                    } else {
                        still_waiting = true;
                    }
                }
                continue;
            }
            if (state == ScheduledState::pause) {
                still_waiting = true;
                continue;
            }
            for (std::size_t step = 0;; ++step) {
                bool fired = false;
                for (auto& recipient : message.recipients) {
                    if (step >= recipient.planned.size() || !due(recipient)) continue;
                    fire(message, recipient, recipient.planned[step]);
                    fired = true;
                }
                if (!fired) break;
            }
            for (auto& recipient : message.recipients) {
                if (due(recipient)) {
                    recipient.planned.clear();
                } else {
                    still_waiting = true;
                }
            }
        }
        return still_waiting;
    }

    /// The timer thread: fires what is due, then sleeps until something is accepted, or
    /// briefly while a message waits (for its send_at, or for its batch to be resumed, which
    /// the scheduled sends API does without telling this thread).
    void dispatch_events() {
        std::unique_lock<std::mutex> lock(events_mutex_);
        while (!stopping_events_) {
            const bool waiting = fire_due_events();
            events_changed_.notify_all();
            if (waiting) {
                events_changed_.wait_for(lock, std::chrono::milliseconds(100));
            } else {
                events_changed_.wait(lock, [this] { return stopping_events_ || work_arrived_; });
            }
            work_arrived_ = false;
        }
    }

    /// The checks of send_at and batch_id SendGrid makes; the error body, or null when valid.
    nlohmann::json check_schedule(const nlohmann::json& payload) const {
        // SendGrid takes send_at on the mail and on each personalization (which wins).
        auto check_send_at = [](const nlohmann::json& holder,
                                const std::string& field) -> nlohmann::json {
            if (!holder.is_object() || !holder.contains("send_at")) return nullptr;
            const auto& send_at = holder["send_at"];
            if (!send_at.is_number_integer() || send_at.get<std::int64_t>() < 0) {
                return detail::error_body(
                    "The send_at parameter must be a unix timestamp "
                    "(seconds, an integer).",
                    field);
            }
            if (send_at.get<std::int64_t>() > unix_now() + max_schedule_ahead_seconds) {
                return detail::error_body(
                    "The send_at parameter cannot be more than 72 hours "
                    "in the future.",
                    field);
            }
            return nullptr;
        };
        nlohmann::json error = check_send_at(payload, "send_at");
        if (!error.is_null()) return error;
        const auto& personalizations = payload.value("personalizations", nlohmann::json());
        for (std::size_t i = 0; personalizations.is_array() && i < personalizations.size(); ++i) {
            error = check_send_at(personalizations[i],
                                  "personalizations." + std::to_string(i) + ".send_at");
            if (!error.is_null()) return error;
        }
        if (payload.contains("batch_id")) {
            const auto& batch = payload["batch_id"];
            if (!batch.is_string() || !scheduled_.known(batch.get<std::string>())) {
                return detail::error_body("The batch_id is not valid.", "batch_id");
            }
        }
        return nullptr;
    }

    /// Keeps an accepted message and plans its recipients' events.
    void accept(const ReceivedRequest& received) {
        StoredMessage message;
        message.message_id = received.message_id;
        message.received_at = unix_now();
        message.payload = received.payload;
        message.headers = received.headers;
        if (received.payload.contains("send_at")) {
            message.send_at = received.payload["send_at"].get<std::int64_t>();
        }
        if (received.payload.contains("batch_id")) {
            message.batch_id = received.payload["batch_id"].get<std::string>();
        }
        message.recipients =
            detail::recipients_of(received.payload, received.message_id, event_rules_);
        if (!message.send_at) {  // the earliest of its personalizations' (the library's way)
            for (const auto& recipient : message.recipients) {
                if (recipient.send_at &&
                    (!message.send_at || *recipient.send_at < *message.send_at))
                    message.send_at = recipient.send_at;
            }
        }
        {
            std::lock_guard<std::mutex> lock(events_mutex_);
            store_.add(std::move(message));
            work_arrived_ = true;
        }
        events_changed_.notify_all();
    }

    static FakeServerOptions options_with(std::string api_key, std::size_t worker_threads) {
        FakeServerOptions options;
        options.api_key = std::move(api_key);
        options.worker_threads = worker_threads;
        return options;
    }

    /// The first queued fault that applies to `request`, used up once more.
    std::optional<Fault> take_fault(const ReceivedRequest& request) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = faults_.begin(); it != faults_.end(); ++it) {
            if (it->matches && !it->matches(request)) continue;
            Fault fault = *it;
            if (--it->times <= 0) faults_.erase(it);
            return fault;
        }
        return std::nullopt;
    }

    SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE std::string next_message_id() {
        // Unique per server: a random prefix and a counter, in SendGrid's alphabet.
        static constexpr char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        std::uint64_t counter = ++message_counter_;
        std::uint64_t mix = (counter + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(port_)) *
                            0xbf58476d1ce4e5b9ULL;
        std::uint64_t mix2 = (mix ^ (mix >> 31)) * 0x94d049bb133111ebULL;
        std::string id;
        for (int i = 0; i < 10; ++i, mix >>= 6) id += alphabet[mix & 63];
        for (int i = 0; i < 6; ++i, mix2 >>= 6) id += alphabet[mix2 & 63];
        for (int i = 0; i < 6; ++i, counter >>= 6) id += alphabet[counter & 63];  // unique part
        return id;
    }

    void answer_json(httplib::Response& response, int status, const nlohmann::json& body) {
        response.status = status;
        response.set_content(body.dump(), "application/json");
    }

    void handle(const httplib::Request& request, httplib::Response& response) {
        ReceivedRequest received;
        received.received_at = std::chrono::system_clock::now();
        for (const auto& [name, value] : request.headers)
            received.headers.emplace_back(name, value);
        received.body = request.body;
        received.payload = sendgrid_backend::detail::parse_json_text(request.body);
        if (received.payload.is_discarded()) received.payload = nullptr;
        const std::optional<Fault> fault = take_fault(received);
        // Recorded on arrival: a client that gives up waiting has still delivered the request.
        std::size_t index = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            index = received_.size();
            received_.push_back(received);
        }

        const long long delay = delay_ms_.load() + (fault ? fault->delay.count() : 0);
        if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));

        respond(request, response, fault, received);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            received_[index].answered_status = response.status;
            received_[index].message_id = received.message_id;
            ++totals_.answered[response.status];
            if (fault && fault->drop_connection) ++totals_.dropped_connections;
        }
        received.answered_status = response.status;
        if (on_request_) on_request_(received);
        if (fault && fault->drop_connection) {
            // Promise a body, send a piece of it, then give up: the connection closes mid-answer.
            response.body.clear();
            response.headers.erase("Content-Type");
            response.set_content_provider(1024, "application/json",
                                          [](std::size_t, std::size_t, httplib::DataSink& sink) {
                                              sink.write("{\"errors\":", 10);
                                              return false;
                                          });
        }
    }

    void respond(const httplib::Request& request, httplib::Response& response,
                 const std::optional<Fault>& fault, ReceivedRequest& received) {
        if (request.get_header_value("Authorization") != "Bearer " + api_key_) {
            // SendGrid's words; the presented key is never echoed back.
            answer_json(response, 401,
                        detail::error_body("The provided authorization grant is invalid, "
                                           "expired, or revoked"));
            return;
        }
        if (fault && fault->status != 0) {
            inject(response, *fault);
            return;
        }
        if (request.body.size() > max_body_bytes) {
            answer_json(response, 413, detail::error_body("Payload Too Large"));
            return;
        }
        const std::string content_type = request.get_header_value("Content-Type");
        if (content_type.rfind("application/json", 0) != 0) {
            answer_json(response, 415,
                        detail::error_body("Content-Type should be application/json."));
            return;
        }
        if (received.payload.is_null()) {
            answer_json(response, 400, detail::error_body("Bad Request"));
            return;
        }
        const nlohmann::json errors = detail::validate_mail_send(received.payload);
        if (!errors.empty()) {
            answer_json(response, 400, {{"errors", errors}});
            return;
        }
        const auto& settings = received.payload.value("mail_settings", nlohmann::json::object());
        if (settings.is_object() && settings.contains("sandbox_mode") &&
            settings["sandbox_mode"].value("enable", false)) {
            response.status = 200;  // sandbox: validated, not delivered, no message id
            return;
        }
        const nlohmann::json schedule_error = check_schedule(received.payload);
        if (!schedule_error.is_null()) {
            answer_json(response, 400, schedule_error);
            return;
        }
        received.message_id = next_message_id();
        accept(received);
        response.status = 202;
        response.set_header("X-Message-Id", received.message_id);
    }

    void inject(httplib::Response& response, const Fault& fault) {
        std::string message = "injected fault";
        switch (fault.status) {
            case 400:
                message = "Bad Request (injected)";
                break;
            case 401:
                message = "The provided authorization grant is invalid, expired, or revoked";
                break;
            case 403:
                message = "access forbidden";
                break;
            case 413:
                message = "Payload Too Large";
                break;
            case 429:
                message = "too many requests";
                break;
            case 500:
                message = "internal server error (injected)";
                break;
            case 503:
                message = "service unavailable (injected)";
                break;
            default:
                break;
        }
        if (fault.status == 429) {
            const auto reset = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count() +
                               1;
            response.set_header("X-RateLimit-Limit", "600");
            response.set_header("X-RateLimit-Remaining", "0");
            response.set_header("X-RateLimit-Reset", std::to_string(reset));
            if (fault.retry_after_seconds) {
                response.set_header("Retry-After", std::to_string(*fault.retry_after_seconds));
            }
        }
        answer_json(response, fault.status, detail::error_body(message));
    }

    /// SendGrid schedules at most 72 hours ahead.
    static constexpr std::int64_t max_schedule_ahead_seconds = 72 * 60 * 60;

    std::string api_key_;
    std::function<void(const ReceivedRequest&)> on_request_;
    std::vector<EventRule> event_rules_;
    std::shared_ptr<const WebhookSigner> signer_;
    std::unique_ptr<WebhookClient> webhook_;
    FakeScheduledSends scheduled_;
    mutable std::mutex events_mutex_;  ///< guards store_, work_arrived_ and stopping_events_
    mutable std::condition_variable events_changed_;
    detail::MessageStore store_;
    bool work_arrived_ = false;
    bool stopping_events_ = false;
    std::thread dispatcher_;
    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    socket_t listen_socket_ = -1;
    std::atomic<long long> delay_ms_{0};
    std::atomic<std::uint64_t> message_counter_{0};
    mutable std::mutex mutex_;
    std::deque<Fault> faults_;
    std::vector<ReceivedRequest> received_;
    FakeServerTotals totals_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
