#pragma once

/// @file
/// The SendGrid Event Webhook, framework-agnostic: hand `EventWebhook::handle` the request's
/// headers and raw body, answer with the status it returns. In between it checks the size,
/// verifies the signature (ECDSA over SHA-256 of timestamp ‖ body, with the account's public
/// key) inside a replay window, parses typed events, drops duplicates by `sg_event_id`, and emits
/// each new event on `sendgrid_event_received`. Link `sendgrid_backend::webhook` (OpenSSL).
///
/// @code
/// sendgrid_backend::WebhookOptions options;
/// options.public_key = verification_key_from_the_sendgrid_dashboard;  // base64 DER or PEM
/// const sendgrid_backend::EventWebhook webhook(options);
/// // in your HTTP handler:
/// auto result = webhook.handle(request_headers, request_body);
/// respond(result.http_status, result.refusal_reason);
/// @endcode

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <deque>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/base64.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// The headers SendGrid signs its Event Webhook requests with.
inline constexpr std::string_view webhook_signature_header =
    "X-Twilio-Email-Event-Webhook-Signature";
inline constexpr std::string_view webhook_timestamp_header =
    "X-Twilio-Email-Event-Webhook-Timestamp";

/// The kinds of event SendGrid reports; `unknown` keeps any other kind (never dropped).
enum class EventType {
    processed,
    dropped,
    delivered,
    deferred,
    bounce,
    open,
    click,
    spamreport,
    unsubscribe,
    group_unsubscribe,
    group_resubscribe,
    unknown,
};

/// The event name SendGrid uses, e.g. "group_unsubscribe"; "unknown" for unknown.
constexpr const char* to_string(EventType type) noexcept {
    switch (type) {
        case EventType::processed:
            return "processed";
        case EventType::dropped:
            return "dropped";
        case EventType::delivered:
            return "delivered";
        case EventType::deferred:
            return "deferred";
        case EventType::bounce:
            return "bounce";
        case EventType::open:
            return "open";
        case EventType::click:
            return "click";
        case EventType::spamreport:
            return "spamreport";
        case EventType::unsubscribe:
            return "unsubscribe";
        case EventType::group_unsubscribe:
            return "group_unsubscribe";
        case EventType::group_resubscribe:
            return "group_resubscribe";
        case EventType::unknown:
            return "unknown";
    }
    return "unknown";
}

/// One event of the POSTed array. Fields SendGrid did not send are empty / unset.
struct WebhookEvent {
    EventType type = EventType::unknown;
    std::string event;  ///< the name as sent, also for unknown types
    std::string email;
    std::int64_t timestamp = 0;
    std::string smtp_id;  ///< "smtp-id"
    std::string sg_event_id;
    std::string sg_message_id;
    std::vector<std::string> categories;  ///< "category", a string or an array
    std::string ip;
    std::string useragent;
    std::optional<bool> tls;
    std::string reason;          ///< dropped, bounce, deferred
    std::string status;          ///< bounce: the SMTP status, e.g. "5.1.1"
    std::string bounce_type;     ///< bounce: "bounce" or "blocked" (SendGrid's "type")
    std::optional<int> attempt;  ///< deferred
    std::string url;             ///< click
    std::optional<int> url_offset_index;
    std::string url_offset_type;
    std::optional<std::int64_t> asm_group_id;  ///< group_unsubscribe, group_resubscribe
    std::optional<std::int64_t> marketing_campaign_id;
    std::string marketing_campaign_name;
    std::string marketing_campaign_version;
    std::string marketing_campaign_split_id;
    /// Top-level keys SendGrid does not define: the custom_args sent with the message.
    nlohmann::json custom_args = nlohmann::json::object();
    /// The event exactly as received.
    nlohmann::json raw;
};

/// Whether `event` is about the message SendGrid accepted with X-Message-Id `message_id`:
/// SendGrid's sg_message_id is that id followed by "." and a suffix of its own.
inline bool belongs_to(const WebhookEvent& event, std::string_view message_id) noexcept {
    const std::string_view id = event.sg_message_id;
    if (message_id.empty() || id.size() < message_id.size()) return false;
    return id.substr(0, message_id.size()) == message_id &&
           (id.size() == message_id.size() || id[message_id.size()] == '.');
}

/// The same for a message sent with SendgridBackend (its recorded outcome.message_id).
inline bool belongs_to(const WebhookEvent& event, const EmailMessage& message) noexcept {
    return belongs_to(event, message.outcome.message_id);
}

namespace detail {

inline std::string json_text(const nlohmann::json& object, const char* key) {
    auto found = object.find(key);
    if (found == object.end() || found->is_null()) return "";
    if (found->is_string()) return found->get<std::string>();
    return found->dump();
}

inline std::optional<std::int64_t> json_integer(const nlohmann::json& object, const char* key) {
    auto found = object.find(key);
    if (found == object.end()) return std::nullopt;
    if (found->is_number_integer() || found->is_number_unsigned())
        return found->get<std::int64_t>();
    if (found->is_number_float()) return static_cast<std::int64_t>(found->get<double>());
    if (found->is_string()) {  // SendGrid sends some numbers as strings ("attempt": "1")
        return parse_decimal(found->get_ref<const std::string&>());
    }
    return std::nullopt;
}

inline EventType event_type_from(std::string_view name) noexcept {
    for (EventType type :
         {EventType::processed, EventType::dropped, EventType::delivered, EventType::deferred,
          EventType::bounce, EventType::open, EventType::click, EventType::spamreport,
          EventType::unsubscribe, EventType::group_unsubscribe, EventType::group_resubscribe}) {
        if (name == to_string(type)) return type;
    }
    return EventType::unknown;
}

inline bool is_documented_event_key(std::string_view key) noexcept {
    static constexpr std::string_view keys[] = {"email",
                                                "timestamp",
                                                "event",
                                                "smtp-id",
                                                "sg_event_id",
                                                "sg_message_id",
                                                "category",
                                                "ip",
                                                "useragent",
                                                "tls",
                                                "cert_err",
                                                "reason",
                                                "status",
                                                "type",
                                                "attempt",
                                                "url",
                                                "url_offset",
                                                "asm_group_id",
                                                "marketing_campaign_id",
                                                "marketing_campaign_name",
                                                "marketing_campaign_version",
                                                "marketing_campaign_split_id",
                                                "response",
                                                "send_at",
                                                "sg_machine_open",
                                                "bounce_classification",
                                                "pool",
                                                "sg_template_id",
                                                "sg_template_name",
                                                "sg_content_type",
                                                "mc_stats",
                                                "phase_id",
                                                "singlesend_id",
                                                "singlesend_name",
                                                "template_id",
                                                "template_name",
                                                "template_version_id",
                                                "template_hash",
                                                "post_type",
                                                "newsletter",
                                                "sg_user_id",
                                                "unique_args"};
    for (auto documented : keys) {
        if (key == documented) return true;
    }
    return false;
}

inline WebhookEvent parse_event(const nlohmann::json& object) {
    WebhookEvent event;
    event.raw = object;
    event.event = json_text(object, "event");
    event.type = event_type_from(event.event);
    event.email = json_text(object, "email");
    event.timestamp = json_integer(object, "timestamp").value_or(0);
    event.smtp_id = json_text(object, "smtp-id");
    event.sg_event_id = json_text(object, "sg_event_id");
    event.sg_message_id = json_text(object, "sg_message_id");
    if (auto category = object.find("category"); category != object.end()) {
        if (category->is_array()) {
            for (const auto& item : *category) {
                event.categories.push_back(item.is_string() ? item.get<std::string>()
                                                            : item.dump());
            }
        } else if (category->is_string()) {
            event.categories.push_back(category->get<std::string>());
        }
    }
    event.ip = json_text(object, "ip");
    event.useragent = json_text(object, "useragent");
    if (auto tls = object.find("tls"); tls != object.end()) {
        if (tls->is_boolean()) event.tls = tls->get<bool>();
        if (tls->is_number()) event.tls = tls->get<double>() != 0;
    }
    event.reason = json_text(object, "reason");
    event.status = json_text(object, "status");
    event.bounce_type = json_text(object, "type");
    if (auto attempt = json_integer(object, "attempt")) event.attempt = static_cast<int>(*attempt);
    event.url = json_text(object, "url");
    if (auto offset = object.find("url_offset"); offset != object.end() && offset->is_object()) {
        if (auto index = json_integer(*offset, "index"))
            event.url_offset_index = static_cast<int>(*index);
        event.url_offset_type = json_text(*offset, "type");
    }
    event.asm_group_id = json_integer(object, "asm_group_id");
    event.marketing_campaign_id = json_integer(object, "marketing_campaign_id");
    event.marketing_campaign_name = json_text(object, "marketing_campaign_name");
    event.marketing_campaign_version = json_text(object, "marketing_campaign_version");
    event.marketing_campaign_split_id = json_text(object, "marketing_campaign_split_id");
    for (const auto& [key, value] : object.items()) {
        if (!is_documented_event_key(key)) event.custom_args[key] = value;
    }
    return event;
}

struct EvpPkeyFree {
    void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
struct EvpMdCtxFree {
    void operator()(EVP_MD_CTX* context) const noexcept { EVP_MD_CTX_free(context); }
};
struct BioFree {
    void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};

/// Reads a public key given as SendGrid shows it (base64 of DER SubjectPublicKeyInfo) or as
/// PEM; null when it is neither, or not an elliptic-curve key.
inline std::shared_ptr<EVP_PKEY> load_ec_public_key(std::string_view text) {
    EVP_PKEY* key = nullptr;
    const std::string_view trimmed = trim(text);
    if (trimmed.find("-----BEGIN") != std::string_view::npos) {
        if (trimmed.size() > 1 << 16) return nullptr;
        std::unique_ptr<BIO, BioFree> bio(
            BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size())));
        if (bio) key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    } else if (auto der = base64_decode(trimmed)) {
        const auto* cursor = reinterpret_cast<const unsigned char*>(der->data());
        key = d2i_PUBKEY(nullptr, &cursor, static_cast<long>(der->size()));
        if (key != nullptr &&
            cursor != reinterpret_cast<const unsigned char*>(der->data()) + der->size()) {
            EVP_PKEY_free(key);  // trailing bytes after the key: not what SendGrid shows
            key = nullptr;
        }
    }
    ERR_clear_error();  // failures leave entries in OpenSSL's per-thread queue
    if (key == nullptr) return nullptr;
    if (EVP_PKEY_base_id(key) != EVP_PKEY_EC) {
        EVP_PKEY_free(key);
        return nullptr;
    }
    return std::shared_ptr<EVP_PKEY>(key, EvpPkeyFree{});
}

}  // namespace detail

/// Why a request was not accepted, or `none`.
enum class WebhookRefusal {
    none,
    body_too_large,
    missing_signature,
    bad_timestamp,
    stale_timestamp,   ///< older than the tolerance: a replay, or a very slow delivery
    future_timestamp,  ///< newer than the tolerance: a wrong clock somewhere
    bad_signature_encoding,
    signature_mismatch,
    malformed_body,
};

/// Verifies SendGrid's signature: ECDSA over SHA-256 of (timestamp bytes ‖ raw body bytes), the
/// signature base64 DER, with the account's public key on whatever curve the key names.
/// Thread-safe; copyable (the key is shared).
class EventWebhookVerifier {
  public:
    /// `public_key`: base64 DER SubjectPublicKeyInfo, as the SendGrid dashboard shows it, or PEM.
    /// @throws ImproperlyConfigured when the key cannot be read or is not an EC key.
    explicit EventWebhookVerifier(std::string_view public_key)
        : key_(detail::load_ec_public_key(public_key)) {
        if (!key_) {
            throw ImproperlyConfigured("public_key",
                                       "is not an elliptic-curve public key in base64 DER or PEM");
        }
    }

    /// Whether `signature_base64` signs `timestamp` followed by `body`, byte for byte.
    /// Never throws; anything malformed is simply not a valid signature.
    bool verify(std::string_view body, std::string_view signature_base64,
                std::string_view timestamp) const noexcept {
        return check(body, signature_base64, timestamp) == WebhookRefusal::none;
    }

    /// The same, saying why not.
    WebhookRefusal check(std::string_view body, std::string_view signature_base64,
                         std::string_view timestamp) const noexcept {
        try {
            const auto signature = detail::base64_decode(detail::trim(signature_base64));
            if (!signature || signature->empty() || signature->size() > 256) {
                return WebhookRefusal::bad_signature_encoding;
            }
            std::unique_ptr<EVP_MD_CTX, detail::EvpMdCtxFree> context(EVP_MD_CTX_new());
            int result = context ? 1 : 0;
            if (result == 1) {
                result =
                    EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key_.get());
            }
            if (result == 1)
                result = EVP_DigestVerifyUpdate(context.get(), timestamp.data(), timestamp.size());
            if (result == 1)
                result = EVP_DigestVerifyUpdate(context.get(), body.data(), body.size());
            if (result == 1) {
                result = EVP_DigestVerifyFinal(
                    context.get(), reinterpret_cast<const unsigned char*>(signature->data()),
                    signature->size());
            }
            ERR_clear_error();
            if (result == 1) return WebhookRefusal::none;
            // 0: a well-formed signature that does not match; < 0: not an ECDSA DER signature.
            return result == 0 ? WebhookRefusal::signature_mismatch
                               : WebhookRefusal::bad_signature_encoding;
        } catch (...) {
            ERR_clear_error();
            return WebhookRefusal::signature_mismatch;
        }
    }

  private:
    std::shared_ptr<EVP_PKEY> key_;
};

/// Remembers which `sg_event_id`s were seen, so SendGrid's retries (for up to 24 hours) are not
/// handled twice. Implement it over Redis or a database table to share it between processes.
class SeenEventIds {
  public:
    virtual ~SeenEventIds() = default;
    /// Records `id`; returns true the first time an id is seen. Must be thread-safe.
    virtual bool first_time(std::string_view id) = 0;
};

/// An in-process SeenEventIds holding the most recent `capacity` ids.
class InMemorySeenEventIds : public SeenEventIds {
  public:
    explicit InMemorySeenEventIds(std::size_t capacity = 100'000) : capacity_(capacity) {}

    bool first_time(std::string_view id) override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string key(id);
        if (!ids_.insert(key).second) return false;
        order_.push_back(std::move(key));
        if (order_.size() > capacity_) {
            ids_.erase(order_.front());
            order_.pop_front();
        }
        return true;
    }

  private:
    std::size_t capacity_;
    std::mutex mutex_;
    std::unordered_set<std::string> ids_;
    std::deque<std::string> order_;
};

/// How `EventWebhook` checks requests.
struct WebhookOptions {
    /// The account's verification key (base64 DER or PEM). Required unless allow_unsigned.
    std::string public_key;
    /// Accept requests without checking a signature (SendGrid's signing is off). Not advised.
    bool allow_unsigned = false;
    /// Refuse a timestamp further than this from now, either way; nullopt turns the check off
    /// (e.g. to verify recorded requests).
    std::optional<std::chrono::seconds> tolerance = std::chrono::minutes(10);
    /// Seconds since the epoch; replace it in tests.
    std::function<std::int64_t()> now = [] {
        return static_cast<std::int64_t>(std::time(nullptr));
    };
    /// Larger bodies are refused (413) before anything else is done with them.
    std::size_t max_body_bytes = 4 * 1024 * 1024;
    /// Where event ids are remembered; null: duplicates are not removed.
    std::shared_ptr<SeenEventIds> seen = std::make_shared<InMemorySeenEventIds>();
    /// Receives exceptions thrown by sendgrid_event_received handlers; null: one line on stderr.
    std::function<void(const WebhookEvent&, std::exception_ptr)> on_handler_error;
};

/// What to answer and what was received.
struct WebhookResult {
    int http_status = 200;  ///< 200, or 400 / 401 / 413 when refused
    WebhookRefusal refusal = WebhookRefusal::none;
    std::string refusal_reason;        ///< one line, empty when accepted
    std::vector<WebhookEvent> events;  ///< the new events, in the order received
    std::size_t duplicates = 0;        ///< events dropped because their sg_event_id was seen before

    bool accepted() const noexcept { return refusal == WebhookRefusal::none; }
};

/// Parses the POSTed JSON array into events (no signature check).
/// @throws InvalidMessage (field "body") when the body is not a JSON array of objects.
inline std::vector<WebhookEvent> parse_webhook_events(std::string_view body) {
    const nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_discarded()) throw InvalidMessage("body", "is not valid JSON");
    if (!json.is_array()) throw InvalidMessage("body", "is not a JSON array of events");
    std::vector<WebhookEvent> events;
    events.reserve(json.size());
    for (std::size_t i = 0; i < json.size(); ++i) {
        if (!json[i].is_object()) {
            throw InvalidMessage("body[" + std::to_string(i) + "]", "is not an event object");
        }
        events.push_back(detail::parse_event(json[i]));
    }
    return events;
}

/// The receiving side of the Event Webhook. See the file comment. Thread-safe.
class EventWebhook {
  public:
    /// @throws ImproperlyConfigured for an unreadable key, or no key without allow_unsigned.
    explicit EventWebhook(WebhookOptions options) : options_(std::move(options)) {
        if (!options_.public_key.empty()) {
            verifier_.emplace(options_.public_key);
        } else if (!options_.allow_unsigned) {
            throw ImproperlyConfigured("public_key",
                                       "is empty; set the verification key (or "
                                       "allow_unsigned, which is not advised)");
        }
        if (!options_.now) {
            options_.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
        }
    }

    /// Checks, parses and de-duplicates one request, then emits each new event on
    /// `sendgrid_event_received` (on this thread, robustly). Never throws for bad input.
    WebhookResult handle(const HttpHeaders& headers, std::string_view body) const {
        WebhookResult result = check(headers, body);
        if (!result.accepted()) return result;
        try {
            std::vector<WebhookEvent> events = parse_webhook_events(body);
            for (auto& event : events) {
                if (options_.seen && !event.sg_event_id.empty() &&
                    !options_.seen->first_time(event.sg_event_id)) {
                    ++result.duplicates;
                    continue;
                }
                result.events.push_back(std::move(event));
            }
        } catch (const InvalidMessage& invalid) {
            return refuse(WebhookRefusal::malformed_body, 400,
                          invalid.field() + " " + invalid.reason());
        }
        for (const auto& event : result.events) {
            for (const auto& error : sendgrid_event_received.send_robust(*this, event)) {
                report(event, error);
            }
        }
        return result;
    }

  private:
    static WebhookResult refuse(WebhookRefusal refusal, int status, std::string reason) {
        WebhookResult result;
        result.http_status = status;
        result.refusal = refusal;
        result.refusal_reason = std::move(reason);
        return result;
    }

    WebhookResult check(const HttpHeaders& headers, std::string_view body) const {
        if (body.size() > options_.max_body_bytes) {
            return refuse(WebhookRefusal::body_too_large, 413,
                          "the body is " + std::to_string(body.size()) + " bytes; at most " +
                              std::to_string(options_.max_body_bytes) + " are accepted");
        }
        if (!verifier_) return {};
        const std::string_view signature = find_header(headers, webhook_signature_header);
        const std::string_view timestamp = find_header(headers, webhook_timestamp_header);
        if (signature.empty() || timestamp.empty()) {
            return refuse(WebhookRefusal::missing_signature, 401,
                          "the signature or timestamp header is missing");
        }
        const std::optional<std::int64_t> seconds = detail::parse_decimal(timestamp, 12);
        if (!seconds)
            return refuse(WebhookRefusal::bad_timestamp, 401, "the timestamp is not unix seconds");
        if (options_.tolerance) {
            const std::int64_t now = options_.now();
            const std::int64_t limit = options_.tolerance->count();
            if (*seconds < now - limit) {
                return refuse(WebhookRefusal::stale_timestamp, 401,
                              "the timestamp is " + std::to_string(now - *seconds) +
                                  " s old, over the tolerance of " + std::to_string(limit) + " s");
            }
            if (*seconds > now + limit) {
                return refuse(WebhookRefusal::future_timestamp, 401,
                              "the timestamp is " + std::to_string(*seconds - now) +
                                  " s in the future, over the tolerance of " +
                                  std::to_string(limit) + " s");
            }
        }
        switch (verifier_->check(body, signature, timestamp)) {
            case WebhookRefusal::none:
                return {};
            case WebhookRefusal::bad_signature_encoding:
                return refuse(WebhookRefusal::bad_signature_encoding, 401,
                              "the signature is not base64 of an ECDSA DER signature");
            default:
                return refuse(WebhookRefusal::signature_mismatch, 401,
                              "the signature does not match the body and timestamp");
        }
    }

    void report(const WebhookEvent& event, const std::exception_ptr& error) const {
        try {
            if (options_.on_handler_error) {
                options_.on_handler_error(event, error);
                return;
            }
        } catch (...) {
            // An error handler that throws must not take the request down with it.
        }
        std::cerr << "[sendgrid_backend] a sendgrid_event_received handler threw: "
                  << detail::describe_exception(error) << '\n';
    }

    WebhookOptions options_;
    std::optional<EventWebhookVerifier> verifier_;
};

SENDGRID_BACKEND_NAMESPACE_END
