#pragma once

/// @file
/// Email addresses as Django writes them: `"Display Name <user@example.com>"`,
/// `"\"Doe, Jane\" <jane@example.com>"` or a bare `user@example.com`.

#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// An address split into the mailbox and the display name (empty when there is none).
struct Address {
    std::string email;
    std::string name;

    friend bool operator==(const Address& a, const Address& b) {
        return a.email == b.email && a.name == b.name;
    }
    friend bool operator!=(const Address& a, const Address& b) { return !(a == b); }
};

namespace detail {

// Characters RFC 5322 does not allow unquoted in the local part, plus space.
inline bool is_forbidden_in_mailbox(char c) noexcept {
    switch (c) {
        case ' ':
        case '\t':
        case '(':
        case ')':
        case '<':
        case '>':
        case ',':
        case ';':
        case ':':
        case '\\':
        case '"':
        case '[':
        case ']':
        case '@':
            return true;
        default:
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    }
}

/// Why `email` is not a mailbox SendGrid accepts, or null when it is one.
inline const char* mailbox_problem(std::string_view email) noexcept {
    const auto at = email.find('@');
    if (at == std::string_view::npos) return "has no '@'";
    if (email.find('@', at + 1) != std::string_view::npos) return "has more than one '@'";
    const std::string_view local = email.substr(0, at);
    const std::string_view domain = email.substr(at + 1);
    if (local.empty()) return "has nothing before the '@'";
    if (local.size() > 64) return "has a local part longer than 64 characters";
    if (domain.empty()) return "has no domain after the '@'";
    if (domain.size() > 255) return "has a domain longer than 255 characters";
    for (char c : local) {
        if (is_forbidden_in_mailbox(c)) return "has a character not allowed in an address";
    }
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
        return "has a misplaced '.' before the '@'";
    }
    if (domain.find('.') == std::string_view::npos) return "has a domain without a '.'";
    std::size_t label_start = 0;
    while (label_start <= domain.size()) {
        auto label_end = domain.find('.', label_start);
        if (label_end == std::string_view::npos) label_end = domain.size();
        const std::string_view label = domain.substr(label_start, label_end - label_start);
        if (label.empty()) return "has an empty part in its domain";
        if (label.front() == '-' || label.back() == '-')
            return "has a domain part that starts or ends with '-'";
        for (char c : label) {
            const auto u = static_cast<unsigned char>(c);
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || u >= 0x80;  // IDN as UTF-8
            if (!ok) return "has a character not allowed in a domain";
        }
        label_start = label_end + 1;
    }
    return nullptr;
}

[[noreturn]] inline void throw_bad_address(const std::string& field, std::string_view text,
                                           const char* problem) {
    throw InvalidMessage(field,
                         quote_for_error(text) + " is not a valid email address (" + problem + ")");
}

}  // namespace detail

/// Parses one address. `field` names where it came from (e.g. "to[1]") for the error.
/// @throws InvalidMessage naming `field` and the value when the text is not one valid address,
///         holds a line break (header injection) or is not UTF-8.
inline Address parse_address(std::string_view text, const std::string& field) {
    if (!detail::is_valid_utf8(text)) throw InvalidMessage(field, "is not valid UTF-8");
    if (detail::has_line_break(text)) {
        throw InvalidMessage(
            field, detail::quote_for_error(text) + " contains a line break (header injection)");
    }
    if (text.find('\0') != std::string_view::npos)
        throw InvalidMessage(field, "contains a NUL byte");
    const std::string_view trimmed = detail::trim(text);
    if (trimmed.empty()) throw InvalidMessage(field, "is empty");

    Address address;
    std::string_view mailbox = trimmed;
    if (trimmed.back() == '>') {
        std::size_t open = std::string_view::npos;
        std::string_view name_part;
        if (trimmed.front() == '"') {
            // Quoted display name: may hold ',', '<' and escaped quotes.
            std::size_t i = 1;
            for (; i < trimmed.size() && trimmed[i] != '"'; ++i) {
                if (trimmed[i] == '\\' && i + 1 < trimmed.size()) {
                    ++i;
                }
                address.name += trimmed[i];
            }
            if (i >= trimmed.size()) detail::throw_bad_address(field, text, "unclosed quote");
            const std::string_view rest = detail::trim(trimmed.substr(i + 1));
            if (rest.empty() || rest.front() != '<') {
                detail::throw_bad_address(field, text, "expected '<' after the quoted name");
            }
            open = trimmed.size() - rest.size();
        } else {
            open = trimmed.rfind('<');
            if (open == std::string_view::npos)
                detail::throw_bad_address(field, text, "unmatched '>'");
            name_part = detail::trim(trimmed.substr(0, open));
            address.name = std::string(name_part);
        }
        mailbox = trimmed.substr(open + 1, trimmed.size() - open - 2);
    } else if (detail::contains_any(trimmed, "<>\"")) {
        detail::throw_bad_address(field, text, "unbalanced '<', '>' or '\"'");
    }
    if (const char* problem = detail::mailbox_problem(mailbox)) {
        detail::throw_bad_address(field, text, problem);
    }
    address.email = std::string(mailbox);
    return address;
}

SENDGRID_BACKEND_NAMESPACE_END
