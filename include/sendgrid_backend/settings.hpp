#pragma once

/// @file
/// `Settings`: the Django settings of django-sendgrid-v5 as a struct, plus what a C++ backend
/// needs on top (timeouts, retries, concurrency). `Settings::from_env()` reads the same names
/// from the environment.

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// When and how often a send is tried again. Only failures where SendGrid cannot have accepted
/// the mail are retried by default: 429 and connection failures before the request was sent.
struct RetryPolicy {
    int max_attempts = 4;  ///< attempts in all, the first included; 1 turns retries off
    std::chrono::milliseconds initial_backoff{500};
    std::chrono::milliseconds max_backoff{20'000};
    double multiplier = 2.0;
    /// Each wait is drawn from [backoff * (1 - jitter), backoff] so that clients spread out.
    double jitter = 0.5;
    /// A 429's Retry-After / X-RateLimit-Reset is honoured up to this long; longer waits are cut.
    std::chrono::milliseconds max_retry_after{60'000};
    /// Retry 500/502/503/504 too. Off by default: SendGrid may have accepted the mail before
    /// failing, so a retry can deliver it twice.
    bool retry_server_errors = false;
};

/// Backend configuration, named after the Django settings it mirrors.
struct Settings {
    /// SENDGRID_API_KEY. Required; never printed, logged or put in an exception.
    std::string api_key;
    /// SENDGRID_HOST_URL: the API's base URL, e.g. "https://api.eu.sendgrid.com" for the EU
    /// region, or a FakeSendgridServer's url() in tests.
    std::string host_url = "https://api.sendgrid.com";
    /// Django's DEBUG (SENDGRID_DEBUG in the environment).
    bool debug = false;
    /// SENDGRID_SANDBOX_MODE_IN_DEBUG: sandbox mode while debug is on (default true).
    bool sandbox_mode_in_debug = true;
    /// SENDGRID_SANDBOX_MODE: forces sandbox mode on or off whatever debug says.
    std::optional<bool> sandbox_mode;
    /// SENDGRID_TRACK_EMAIL_OPENS, SENDGRID_TRACK_CLICKS_HTML, SENDGRID_TRACK_CLICKS_PLAIN.
    bool track_email_opens = true;
    bool track_clicks_html = true;
    bool track_clicks_plain = true;
    /// SENDGRID_ECHO_TO_STDOUT: write each message to a stream (stdout unless one is given).
    bool echo_to_stdout = false;
    /// SENDGRID_TIMEOUT (seconds): the whole request, connecting included.
    std::chrono::milliseconds timeout{30'000};
    std::chrono::milliseconds connect_timeout{10'000};
    RetryPolicy retry;
    /// Requests in flight at once while a batch is sent.
    std::size_t max_in_flight = 8;
    /// Drop repeated addresses within a personalization instead of refusing the message.
    bool deduplicate_recipients = false;
    /// A CA bundle file for TLS verification; empty: the system's.
    std::string ca_bundle;
    /// Request bodies at least this large are sent gzip-compressed; 0 turns compression off.
    std::size_t gzip_min_bytes = 64 * 1024;

    /// Whether mail is sent with SendGrid's sandbox mode (validated, never delivered).
    bool effective_sandbox_mode() const noexcept {
        return sandbox_mode.value_or(debug && sandbox_mode_in_debug);
    }

    /// Settings from the environment: SENDGRID_API_KEY, SENDGRID_HOST_URL, SENDGRID_DEBUG,
    /// SENDGRID_SANDBOX_MODE, SENDGRID_SANDBOX_MODE_IN_DEBUG, SENDGRID_TRACK_EMAIL_OPENS,
    /// SENDGRID_TRACK_CLICKS_HTML, SENDGRID_TRACK_CLICKS_PLAIN, SENDGRID_ECHO_TO_STDOUT,
    /// SENDGRID_TIMEOUT. Unset variables keep the defaults. Booleans are true/false, 1/0,
    /// yes/no or on/off (any case).
    /// @throws ImproperlyConfigured naming the variable when a value cannot be parsed (a typo
    ///         is an error, never a silent false). A missing key is reported by the backend.
    static Settings from_env();
};

namespace detail {

inline std::optional<std::string> env(const char* name) {
    const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once at setup
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

/// Parses a boolean setting strictly.
inline bool parse_bool_setting(const char* name, std::string_view text) {
    const std::string value = to_lower_ascii(trim(text));
    if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
    if (value == "0" || value == "false" || value == "no" || value == "off") return false;
    throw ImproperlyConfigured(
        name, quote_for_error(text) + " is not a boolean (use true/false, 1/0, yes/no, on/off)");
}

/// Parses a positive number of seconds ("30", "2.5") into milliseconds.
inline std::chrono::milliseconds parse_seconds_setting(const char* name, const std::string& text) {
    std::size_t used = 0;
    double seconds = 0;
    try {
        seconds = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size() || !(seconds > 0) || seconds > 86400) {
        throw ImproperlyConfigured(
            name, quote_for_error(text) + " is not a number of seconds between 0 and 86400");
    }
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000 + 0.5));
}

}  // namespace detail

inline Settings Settings::from_env() {
    Settings settings;
    if (auto key = detail::env("SENDGRID_API_KEY")) settings.api_key = *key;
    if (auto url = detail::env("SENDGRID_HOST_URL")) {
        if (!url->empty()) settings.host_url = *url;
    }
    struct BoolSetting {
        const char* name;
        bool* target;
    };
    const BoolSetting flags[] = {
        {"SENDGRID_DEBUG", &settings.debug},
        {"SENDGRID_SANDBOX_MODE_IN_DEBUG", &settings.sandbox_mode_in_debug},
        {"SENDGRID_TRACK_EMAIL_OPENS", &settings.track_email_opens},
        {"SENDGRID_TRACK_CLICKS_HTML", &settings.track_clicks_html},
        {"SENDGRID_TRACK_CLICKS_PLAIN", &settings.track_clicks_plain},
        {"SENDGRID_ECHO_TO_STDOUT", &settings.echo_to_stdout},
    };
    for (const auto& flag : flags) {
        if (auto value = detail::env(flag.name))
            *flag.target = detail::parse_bool_setting(flag.name, *value);
    }
    if (auto value = detail::env("SENDGRID_SANDBOX_MODE")) {
        settings.sandbox_mode = detail::parse_bool_setting("SENDGRID_SANDBOX_MODE", *value);
    }
    if (auto value = detail::env("SENDGRID_TIMEOUT")) {
        settings.timeout = detail::parse_seconds_setting("SENDGRID_TIMEOUT", *value);
    }
    return settings;
}

SENDGRID_BACKEND_NAMESPACE_END
