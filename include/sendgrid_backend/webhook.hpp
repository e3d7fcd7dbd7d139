#pragma once

/// @file
/// The SendGrid Event Webhook, framework-agnostic: hand `EventWebhook::handle` the request's
/// headers and raw body, answer with the status it returns. In between it checks the size,
/// verifies the signature (ECDSA over SHA-256 of timestamp ‖ body, with the account's public
/// key) inside a replay window, parses typed events, drops duplicates by `sg_event_id`, and emits
/// each new event on `sendgrid_event_received`. Link `sendgrid_backend::webhook` (OpenSSL).
/// Parsing alone (webhook_events.hpp) needs no OpenSSL.
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

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/signals/handler_errors.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/status/tracker.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/webhook_events.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// The headers SendGrid signs its Event Webhook requests with.
inline constexpr std::string_view webhook_signature_header =
    "X-Twilio-Email-Event-Webhook-Signature";
inline constexpr std::string_view webhook_timestamp_header =
    "X-Twilio-Email-Event-Webhook-Timestamp";

namespace detail {

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
    // Line ends too: a key read from a file (or pasted) usually ends with one.
    std::string_view trimmed = text;
    while (!trimmed.empty() &&
           std::string_view(" \t\r\n").find(trimmed.front()) != std::string_view::npos)
        trimmed.remove_prefix(1);
    while (!trimmed.empty() &&
           std::string_view(" \t\r\n").find(trimmed.back()) != std::string_view::npos)
        trimmed.remove_suffix(1);
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

/// How `EventWebhook` checks requests.
struct WebhookOptions {
    /// The account's verification key (base64 DER or PEM). Required unless allow_unsigned.
    std::string public_key;
    /// Accept requests without checking a signature (SendGrid's signing is off). Not advised.
    bool allow_unsigned = false;
    /// Refuse a timestamp further than this from now, either way: 0 to `max_tolerance`; nullopt
    /// turns the check off (e.g. to verify recorded requests).
    std::optional<std::chrono::seconds> tolerance = std::chrono::minutes(10);
    static constexpr std::chrono::seconds max_tolerance{366 * 24 * 3600};
    /// Seconds since the epoch; replace it in tests.
    std::function<std::int64_t()> now = [] {
        return static_cast<std::int64_t>(std::time(nullptr));
    };
    /// Larger bodies are refused (413) before anything else is done with them.
    std::size_t max_body_bytes = 4 * 1024 * 1024;
    /// Where each event is applied to its message's status (status/tracker.hpp), before
    /// duplicates by id are removed: the tracker has its own, order- and copy-proof. When its
    /// store fails the request is answered 503 (SendGrid retries it). Null: none.
    std::shared_ptr<StatusTracker> statuses;
    /// Where event ids are remembered; null: duplicates are not removed.
    std::shared_ptr<SeenEventIds> seen = std::make_shared<InMemorySeenEventIds>();
    /// Receives exceptions thrown by sendgrid_event_received handlers; null: one line on stderr.
    std::function<void(const WebhookEvent&, std::exception_ptr)> on_handler_error;
    /// Receives exceptions thrown by sendgrid_webhook_handled handlers; null: one line on stderr.
    std::function<void(const WebhookResult&, std::exception_ptr)> on_result_handler_error;
};

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
        if (options_.tolerance) {
            detail::require_within("WebhookOptions::tolerance", *options_.tolerance,
                                   std::chrono::seconds(0), WebhookOptions::max_tolerance);
        }
    }

    /// Checks, parses and de-duplicates one request, then emits each new event on
    /// `sendgrid_event_received` (on this thread, robustly). Never throws for bad input.
    /// Then sends `sendgrid_webhook_handled` with the result.
    WebhookResult handle(const HttpHeaders& headers, std::string_view body) const {
        WebhookResult result = receive(headers, body);
        for (const auto& error : sendgrid_webhook_handled.send_robust(*this, result)) {
            detail::report_handler_error(options_.on_result_handler_error, result, error,
                                         "sendgrid_webhook_handled handler");
        }
        return result;
    }

  private:
    WebhookResult receive(const HttpHeaders& headers, std::string_view body) const {
        WebhookResult result = check(headers, body);
        if (!result.accepted()) return result;
        result.verified = verifier_.has_value();
        const auto malformed = [](const InvalidWebhookBody& invalid) {
            return refuse(WebhookRefusal::malformed_body, 400,
                          invalid.field() + " " + invalid.reason());
        };
        if (!options_.statuses) {
            try {
                result.events = parse_webhook_events(body);
            } catch (const InvalidWebhookBody& invalid) {
                return malformed(invalid);
            }
        } else {
            // The body checked whole first (nothing is applied from one that is refused), then
            // read a part at a time while the store applies the part before.
            try {
                std::size_t count = 0;
                detail::WebhookBodyReader reader = detail::WebhookBodyReader::checked(body, count);
                result.events.reserve(count);
                result.statuses_applied = options_.statuses->record(result.events, reader);
                // A store of the user's own may stop asking before the end: the events it did
                // not take are still the request's (and its handlers').
                reader.read(&result.events, static_cast<std::size_t>(-1));
            } catch (const InvalidWebhookBody& invalid) {
                return malformed(invalid);  // by check(): nothing was applied
            } catch (...) {
                return refuse(WebhookRefusal::status_store_failed, 503,
                              "the status store failed: " +
                                  detail::describe_exception(std::current_exception()));
            }
        }
        if (options_.seen) drop_duplicates(result);
        for (const auto& event : result.events) {
            for (const auto& error : sendgrid_event_received.send_robust(*this, event)) {
                detail::report_handler_error(options_.on_handler_error, event, error,
                                             "sendgrid_event_received handler");
            }
        }
        return result;
    }

    /// Removes the events whose sg_event_id was seen before, keeping the others in order (in
    /// place: the events are moved only past a duplicate).
    void drop_duplicates(WebhookResult& result) const {
        auto& events = result.events;
        std::size_t kept = 0;
        for (std::size_t i = 0; i < events.size(); ++i) {
            WebhookEvent& event = events[i];
            if (!event.sg_event_id.empty() && !options_.seen->first_time(event.sg_event_id)) {
                ++result.duplicates;
                continue;
            }
            if (kept != i) events[kept] = std::move(event);
            ++kept;
        }
        events.erase(events.begin() + static_cast<std::ptrdiff_t>(kept), events.end());
    }

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
            // The clock is the user's: held where now ± the tolerance cannot overflow.
            constexpr std::int64_t far = std::int64_t{1} << 62;
            const std::int64_t now = std::clamp(options_.now(), -far, far);
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

    WebhookOptions options_;
    std::optional<EventWebhookVerifier> verifier_;
};

SENDGRID_BACKEND_NAMESPACE_END
