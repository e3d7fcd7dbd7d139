#pragma once

/// @file
/// SENDGRID_HOST_URL taken apart and checked, and a URL made safe to show in an error.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// SENDGRID_HOST_URL taken apart: `scheme://host[:port][/base/path]`.
struct BaseUrl {
    std::string scheme;  ///< "http" or "https", lower case
    std::string host;    ///< a name, an IPv4 address or "[IPv6]"
    std::string port;    ///< digits, or empty for the scheme's default
    std::string path;    ///< "" or "/base/path", without a trailing '/'

    /// The mail/send endpoint under this base.
    std::string mail_send_url() const {
        return scheme + "://" + host + (port.empty() ? "" : ":" + port) + path + "/v3/mail/send";
    }
};

inline bool is_hex_digit(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline bool is_alnum_ascii(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// Why `host` (without a port) is not a host name or address, or null.
inline const char* host_problem(std::string_view host) noexcept {
    if (host.empty()) return "has no host";
    if (host.front() == '[') {
        if (host.back() != ']') return "has an unclosed '[' around its IPv6 host";
        const std::string_view inside = host.substr(1, host.size() - 2);
        std::size_t colons = 0;
        for (char c : inside) {
            if (c == ':') {
                ++colons;
            } else if (!is_hex_digit(c) && c != '.') {
                return "has an IPv6 host that is not an IPv6 address";
            }
        }
        return colons >= 2 ? nullptr : "has an IPv6 host that is not an IPv6 address";
    }
    std::size_t label_length = 0;
    for (std::size_t i = 0; i < host.size(); ++i) {
        const char c = host[i];
        if (c == '.') {
            // One trailing dot (a fully qualified name) is fine; an empty label is not.
            if (label_length == 0) return "has an empty part in its host name";
            label_length = 0;
        } else if (is_alnum_ascii(c) || c == '-' || c == '_') {
            ++label_length;
        } else {
            return "has a character not allowed in a host name";
        }
    }
    return nullptr;
}

/// Why the path part (from the first '/' on) is not a base path, or null.
inline const char* path_problem(std::string_view path) noexcept {
    for (std::size_t i = 0; i < path.size(); ++i) {
        const char c = path[i];
        if (c == '%') {
            if (i + 2 >= path.size() || !is_hex_digit(path[i + 1]) || !is_hex_digit(path[i + 2])) {
                return "has a '%' that is not followed by two hex digits";
            }
            continue;
        }
        if (is_alnum_ascii(c) || contains_any(std::string_view(&c, 1), "-._~!$&'()*+,;=:@/")) {
            continue;
        }
        return "has a character not allowed in a URL path";
    }
    // The backend adds /v3/mail/send itself: a base that already names the API is a mistake
    // that would post to /v3/v3/mail/send.
    std::size_t start = 0;
    while (start < path.size()) {
        std::size_t end = path.find('/', start + 1);
        if (end == std::string_view::npos) end = path.size();
        if (iequals(path.substr(start, end - start), "/v3")) {
            return "already names the API version (/v3); give the base URL, e.g. "
                   "https://api.sendgrid.com: /v3/mail/send is added to it";
        }
        start = end;
    }
    return nullptr;
}

/// `url` as an error message may show it: user credentials (before an '@' of the authority), a
/// query and a fragment replaced by "[hidden]", since either may hold a secret.
inline std::string url_for_error(std::string_view url) {
    std::string shown(url);
    const std::size_t scheme_end = shown.find("://");
    const std::size_t start = scheme_end == std::string::npos ? 0 : scheme_end + 3;
    const std::size_t authority_end = std::min(shown.find_first_of("/?#", start), shown.size());
    const std::size_t at = shown.rfind('@', authority_end == 0 ? 0 : authority_end - 1);
    if (at != std::string::npos && at >= start && at < authority_end) {
        shown.replace(start, at - start, "[hidden]");
    }
    const std::size_t query = shown.find_first_of("?#", start);
    if (query != std::string::npos) shown.replace(query + 1, std::string::npos, "[hidden]");
    return shown;
}

/// Splits and checks `text` as SENDGRID_HOST_URL; returns why it is not a usable base URL, or
/// null (and fills `url`). Strict on purpose: what passes here is a URL every transport can use
/// as it is, so a typo fails at start-up instead of on every message.
inline const char* base_url_problem(std::string_view text, BaseUrl& url) {
    if (text.size() > 2048) return "is longer than 2048 characters";
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x80) return "holds a character that is not ASCII (write a host as xn--...)";
        if (byte <= 0x20 || byte == 0x7f) return "holds a space or a control character";
    }
    std::string_view rest;
    if (text.size() >= 8 && iequals(text.substr(0, 8), "https://")) {
        url.scheme = "https";
        rest = text.substr(8);
    } else if (text.size() >= 7 && iequals(text.substr(0, 7), "http://")) {
        url.scheme = "http";
        rest = text.substr(7);
    } else {
        return "must start with https:// (or http:// for a test server)";
    }
    const std::size_t authority_end = rest.find_first_of("/?#");
    const std::string_view authority = rest.substr(0, authority_end);
    std::string_view after =
        authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
    if (authority.empty()) return "has no host";
    if (authority.find('@') != std::string_view::npos) {
        return "holds user credentials; leave them out (the API key is sent in a header)";
    }
    std::string_view host = authority;
    std::string_view port;
    const std::size_t bracket = authority.rfind(']');
    const std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos &&
        (authority.front() != '[' || (bracket != std::string_view::npos && colon > bracket))) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        if (port.empty() || port.size() > 5) return "has a port that is not 1 to 65535";
        const auto number = parse_decimal(port, 5);
        if (!number || *number < 1 || *number > 65535) return "has a port that is not 1 to 65535";
    }
    if (const char* problem = host_problem(host)) return problem;
    if (after.find('?') != std::string_view::npos) {
        return "has a query ('?'); give the base URL only";
    }
    if (after.find('#') != std::string_view::npos) {
        return "has a fragment ('#'); give the base URL only";
    }
    while (!after.empty() && after.back() == '/') after.remove_suffix(1);
    if (const char* problem = path_problem(after)) return problem;
    url.host = std::string(host);
    url.port = std::string(port);
    url.path = std::string(after);
    return nullptr;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
