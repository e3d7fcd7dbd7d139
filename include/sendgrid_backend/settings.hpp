#pragma once

/// @file
/// `Settings`: the Django settings of django-sendgrid-v5 as a struct, plus what a C++ backend
/// needs on top (timeouts, retries, concurrency). `Settings::from_env()` reads the same names
/// from the environment.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/json/event_keys.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/detail/text/url.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/retry_policy.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

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
    /// SENDGRID_TIMEOUT (seconds): the whole request, connecting included. More than 0, at
    /// most `max_wait` (24 hours).
    std::chrono::milliseconds timeout{30'000};
    /// Connecting alone (DNS, TCP, TLS). More than 0, at most `max_wait`.
    std::chrono::milliseconds connect_timeout{10'000};
    RetryPolicy retry;
    /// SENDGRID_MAX_IN_FLIGHT: requests in flight at once while a batch is sent (1 to 1000).
    /// A batch's rate is at most this many requests per SendGrid answer time (~100-300 ms).
    std::size_t max_in_flight = 8;
    /// A kept-alive connection idle for longer than this is closed instead of reused. libcurl
    /// counts idle time in whole seconds, so one idle for up to 3.999 s is still reused: below
    /// the 5 s after which Apache, Node.js and cpp-httplib close idle connections, so a request
    /// is not written into a connection the server is closing (its outcome would be unknown).
    /// From 0 to `max_wait`.
    std::chrono::milliseconds max_idle_connection_age{3'000};
    /// Give every message a tracking key (SendgridBackend): the one the message carries in
    /// `custom_args[tracking_arg]`, or a fresh random one added to the request's custom_args,
    /// which SendGrid echoes in every Event Webhook event. It is on `outcome.tracking_key`.
    bool tracking_keys = true;
    /// The custom_arg that carries the tracking key (1 to 100 bytes).
    std::string tracking_arg = default_tracking_arg;
    /// Drop repeated addresses within a personalization instead of refusing the message.
    bool deduplicate_recipients = false;
    /// Send a message whose personalizations (explicit ones, or make_private's) hold more than
    /// SendGrid's 1000 recipients a request as several requests of whole personalizations
    /// (parts.hpp, which a program that sets this must include), with one `sendgrid_email_sent` for
    /// the message and each part on `outcome.parts`. Off: such a message is refused as invalid.
    bool split_large_messages = false;
    /// A CA bundle file for TLS verification; empty: the system's.
    std::string ca_bundle;
    /// Request bodies at least this large are sent gzip-compressed; 0 turns compression off.
    /// Any size: one above the largest request (30 MB) compresses nothing.
    std::size_t gzip_min_bytes = 64 * 1024;

    /// The longest any duration setting may be (here and in `retry`): a day. Bounds keep the
    /// arithmetic on them (a timeout plus a margin, tries times the timeout) far from overflow.
    static constexpr std::chrono::milliseconds max_wait = std::chrono::hours(24);

    /// Whether mail is sent with SendGrid's sandbox mode (validated, never delivered).
    bool effective_sandbox_mode() const noexcept {
        return sandbox_mode.value_or(debug && sandbox_mode_in_debug);
    }

    /// Settings from the environment: SENDGRID_API_KEY, SENDGRID_HOST_URL, SENDGRID_DEBUG,
    /// SENDGRID_SANDBOX_MODE, SENDGRID_SANDBOX_MODE_IN_DEBUG, SENDGRID_TRACK_EMAIL_OPENS,
    /// SENDGRID_TRACK_CLICKS_HTML, SENDGRID_TRACK_CLICKS_PLAIN, SENDGRID_ECHO_TO_STDOUT,
    /// SENDGRID_TIMEOUT, SENDGRID_MAX_IN_FLIGHT. Unset variables keep the defaults. Booleans
    /// are true/false, 1/0, yes/no or on/off (any case).
    /// @throws ImproperlyConfigured naming the variable when a value cannot be parsed (a typo
    ///         is an error, never a silent false) or is refused (a key with a line break, a
    ///         host URL that is not one). A missing key is reported by the backend.
    static Settings from_env();

    /// Checks every field; the backend calls it when it is constructed.
    /// @throws ImproperlyConfigured naming the field as `Settings::<field>` (from_env names the
    ///         environment variable it read instead) and why:
    ///         no API key or one that is not printable ASCII, a host_url that is not a base
    ///         http(s) URL (a host, an optional port and base path, no query, no fragment, no
    ///         /v3), a timeout of 0 or less or over `max_wait`, retry values that cannot work,
    ///         max_in_flight outside 1..1000, a ca_bundle that cannot be read. The key is never
    ///         printed.
    void validate() const;
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

/// Parses a positive number of seconds ("30", "2.5") into whole milliseconds, rounding up so
/// that a tiny positive value never becomes 0 (which libcurl reads as "no limit").
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
            name, quote_for_error(text) + " is not a number of seconds above 0 and up to 86400");
    }
    return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

/// Parses a whole number from `min` to `max` ("16"; spaces around it are ignored).
inline std::size_t parse_count_setting(const char* name, std::string_view text, std::size_t min,
                                       std::size_t max) {
    const std::optional<std::int64_t> value = parse_decimal(trim(text), 9);
    if (!value || *value < static_cast<std::int64_t>(min) ||
        *value > static_cast<std::int64_t>(max)) {
        throw ImproperlyConfigured(name, quote_for_error(text) + " is not a whole number from " +
                                             std::to_string(min) + " to " + std::to_string(max));
    }
    return static_cast<std::size_t>(*value);
}

/// Why `key` cannot be an API key, or empty. Names a position, never the key's characters.
/// `how_to_set` ends the text for a missing key: a program says how its users give one.
inline std::string api_key_problem(
    std::string_view key,
    std::string_view how_to_set = "set SENDGRID_API_KEY or pass BackendOptions::api_key") {
    if (trim(key).empty()) return "is not set; " + std::string(how_to_set);
    for (std::size_t i = 0; i < key.size(); ++i) {
        const auto byte = static_cast<unsigned char>(key[i]);
        if (byte > 0x20 && byte < 0x7f) continue;
        const std::string where = " at position " + std::to_string(i);
        if (byte == '\r' || byte == '\n') {
            return "has a line break" + where + " (a key read from a file keeps its newline)";
        }
        if (byte == ' ' || byte == '\t') return "has a space or tab" + where;
        static constexpr char hex[] = "0123456789ABCDEF";
        return std::string("has a byte that is not printable ASCII (0x") + hex[byte >> 4] +
               hex[byte & 15] + ")" + where;
    }
    return "";
}

/// Refuses `url` as a host URL, naming `setting` (where it came from) and the URL without its
/// credentials or query.
inline void refuse_bad_host_url(const char* setting, std::string_view url) {
    BaseUrl parts;
    if (const char* problem = base_url_problem(url, parts)) {
        refuse_setting(setting, quote_for_error(url_for_error(url)) + " " + problem);
    }
}

}  // namespace detail

#if SENDGRID_BACKEND_DEFINE_COMPILED
SENDGRID_BACKEND_COMPILED Settings Settings::from_env() {
    Settings settings;
    // A bad value is named by the variable it came from; a missing key is the backend's to
    // report (an explicit BackendOptions::api_key may still come).
    if (auto key = detail::env("SENDGRID_API_KEY")) {
        settings.api_key = *key;
        const std::string problem = detail::api_key_problem(*key);
        if (!detail::trim(*key).empty() && !problem.empty()) {
            detail::refuse_setting("SENDGRID_API_KEY", problem);
        }
    }
    if (auto url = detail::env("SENDGRID_HOST_URL"); url && !url->empty()) {
        detail::refuse_bad_host_url("SENDGRID_HOST_URL", *url);
        settings.host_url = *url;
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
    if (auto value = detail::env("SENDGRID_MAX_IN_FLIGHT")) {
        settings.max_in_flight =
            detail::parse_count_setting("SENDGRID_MAX_IN_FLIGHT", *value, 1, 1000);
    }
    return settings;
}

SENDGRID_BACKEND_COMPILED void Settings::validate() const {
    if (const std::string problem = detail::api_key_problem(api_key); !problem.empty()) {
        detail::refuse_setting("Settings::api_key", problem);
    }
    detail::refuse_bad_host_url("Settings::host_url", host_url);
    detail::require_positive("Settings::timeout", timeout);
    detail::require_at_most("Settings::timeout", timeout, max_wait);
    detail::require_positive("Settings::connect_timeout", connect_timeout);
    detail::require_at_most("Settings::connect_timeout", connect_timeout, max_wait);
    if (max_idle_connection_age.count() < 0) {
        detail::refuse_setting("Settings::max_idle_connection_age", "must not be negative");
    }
    detail::require_at_most("Settings::max_idle_connection_age", max_idle_connection_age, max_wait);
    if (max_in_flight < 1 || max_in_flight > 1000) {
        detail::refuse_setting("Settings::max_in_flight", "is " + std::to_string(max_in_flight) +
                                                              "; it must be from 1 to 1000");
    }
    if (retry.max_tries < 1 || retry.max_tries > 100) {
        detail::refuse_setting(
            "Settings::retry.max_tries",
            "is " + std::to_string(retry.max_tries) + "; it must be from 1 (no retries) to 100");
    }
    const std::pair<const char*, std::chrono::milliseconds> waits[] = {
        {"Settings::retry.initial_backoff", retry.initial_backoff},
        {"Settings::retry.max_backoff", retry.max_backoff},
        {"Settings::retry.max_retry_after", retry.max_retry_after}};
    for (const auto& [name, wait] : waits) {
        if (wait.count() < 0 || wait > max_wait) {
            detail::refuse_setting(
                name, "is " + detail::describe_duration(wait) + "; it must be from 0 to 24 hours");
        }
    }
    if (!(retry.multiplier >= 1.0 && retry.multiplier <= 1000.0)) {
        detail::refuse_setting("Settings::retry.multiplier", "must be a number from 1 to 1000");
    }
    if (!(retry.jitter >= 0.0 && retry.jitter <= 1.0)) {
        detail::refuse_setting("Settings::retry.jitter", "must be a number from 0 to 1");
    }
    if (tracking_keys && (tracking_arg.empty() || tracking_arg.size() > 100)) {
        detail::refuse_setting("Settings::tracking_arg",
                               "is " + std::to_string(tracking_arg.size()) +
                                   " bytes long; name the custom_arg in 1 to 100 bytes");
    }
    if (tracking_keys) {
        const std::string problem = detail::tracking_arg_problem(tracking_arg);
        if (!problem.empty()) detail::refuse_setting("Settings::tracking_arg", problem);
    }
    if (!ca_bundle.empty()) {
        std::FILE* file = std::fopen(ca_bundle.c_str(), "rb");
        if (file == nullptr) {
            detail::refuse_setting("Settings::ca_bundle",
                                   detail::quote_for_error(ca_bundle) + " cannot be opened");
        }
        std::fclose(file);
    }
}
#endif  // SENDGRID_BACKEND_DEFINE_COMPILED

SENDGRID_BACKEND_NAMESPACE_END
