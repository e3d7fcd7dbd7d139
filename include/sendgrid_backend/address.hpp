#pragma once

/// @file
/// Email addresses as Django writes them: `"Display Name <user@example.com>"`,
/// `"\"Doe, Jane\" <jane@example.com>"` or a bare `user@example.com`. One text is one address:
/// an unquoted name may hold ',' or ';' (`Doe, Jane <jane@example.com>`), but not next to
/// something that looks like another address (a list pasted into one entry).

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
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
constexpr bool is_forbidden_in_mailbox(char c) noexcept {
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

/// Bit 1: allowed in the local part; bit 2: allowed in a domain label (letters, digits, '-',
/// and bytes of UTF-8 for IDNs).
constexpr std::array<unsigned char, 256> mailbox_char_classes() noexcept {
    std::array<unsigned char, 256> classes{};
    for (int c = 0; c < 256; ++c) {
        unsigned char bits = is_forbidden_in_mailbox(static_cast<char>(c)) ? 0 : 1;
        const bool domain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c >= 0x80;
        if (domain) bits |= 2;
        classes[static_cast<std::size_t>(c)] = bits;
    }
    return classes;
}
inline constexpr std::array<unsigned char, 256> mailbox_classes = mailbox_char_classes();

/// Whether `email` passes every rule of `mailbox_problem_by_rule`, in one pass (every address of
/// every message is checked; the rule-by-rule version, which names the broken rule, runs only
/// when this says no).
inline bool is_plain_mailbox(std::string_view email) noexcept {
    const std::size_t at = email.find('@');
    if (at == std::string_view::npos || at == 0 || at > 64) return false;
    const std::size_t domain_size = email.size() - at - 1;
    if (domain_size == 0 || domain_size > 255) return false;
    char before = '.';  // a leading '.' counts as misplaced
    for (std::size_t i = 0; i < at; ++i) {
        const char c = email[i];
        if ((mailbox_classes[static_cast<unsigned char>(c)] & 1) == 0) return false;
        if (c == '.' && before == '.') return false;
        before = c;
    }
    if (before == '.') return false;
    bool has_dot = false;
    before = '.';  // a domain may not start with '.' or '-'
    for (std::size_t i = at + 1; i < email.size(); ++i) {
        const char c = email[i];
        if (c == '.') {
            if (before == '.' || before == '-') return false;
            has_dot = true;
        } else if ((mailbox_classes[static_cast<unsigned char>(c)] & 2) == 0 ||
                   (c == '-' && before == '.')) {
            return false;
        }
        before = c;
    }
    return has_dot && before != '.' && before != '-';
}

/// Why `email` is not a mailbox SendGrid accepts, or null when it is one: rule by rule, so
/// that the first broken rule is the one reported.
inline const char* mailbox_problem_by_rule(std::string_view email) noexcept {
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

[[noreturn]] inline void throw_bad_address(std::string_view field, std::string_view text,
                                           const char* problem) {
    throw InvalidMessage(std::string(field),
                         quote_for_error(text) + " is not a valid email address (" + problem + ")");
}

}  // namespace detail

namespace detail {

/// An address parsed in place: views into the text it came from. Only a quoted display name
/// with backslash escapes is copied (unescaped). Sending parses every address of every message:
/// copying each into an `Address` cost two allocations per address.
struct AddressView {
    std::string_view email;
    std::string_view name_in_text;  ///< the display name as written (when not unescaped)
    std::string unescaped_name;     ///< a quoted name with escapes, without them
    bool name_is_unescaped = false;

    std::string_view name() const noexcept {
        return name_is_unescaped ? std::string_view(unescaped_name) : name_in_text;
    }

    friend bool operator==(const AddressView& a, const AddressView& b) {
        return a.email == b.email && a.name() == b.name();
    }
    friend bool operator!=(const AddressView& a, const AddressView& b) { return !(a == b); }
};

/// `parse_address` without the copies; the views are into `text`, which must outlive them.
inline AddressView parse_address_view(std::string_view text, std::string_view field) {
    // One pass for the common case: printable ASCII holds no line break, NUL or bad UTF-8.
    if (!is_printable_ascii(text)) {
        if (!is_valid_utf8(text)) throw InvalidMessage(std::string(field), "is not valid UTF-8");
        if (has_line_break(text)) {
            throw InvalidMessage(
                std::string(field),
                quote_for_error(text) + " contains a line break (header injection)");
        }
        if (text.find('\0') != std::string_view::npos)
            throw InvalidMessage(std::string(field), "contains a NUL byte");
    }
    const std::string_view trimmed = trim(text);
    if (trimmed.empty()) throw InvalidMessage(std::string(field), "is empty");

    AddressView address;
    std::string_view mailbox = trimmed;
    const bool bracketed = trimmed.back() == '>';
    if (bracketed) {
        std::size_t open = std::string_view::npos;
        if (trimmed.front() == '"') {
            // Quoted display name: may hold ',', '<' and escaped quotes.
            std::size_t i = 1;
            bool escaped = false;
            for (; i < trimmed.size() && trimmed[i] != '"'; ++i) {
                if (trimmed[i] == '\\' && i + 1 < trimmed.size()) {
                    escaped = true;
                    ++i;
                }
            }
            if (i >= trimmed.size()) throw_bad_address(field, text, "unclosed quote");
            if (escaped) {
                for (std::size_t k = 1; k < i; ++k) {
                    if (trimmed[k] == '\\') ++k;
                    address.unescaped_name += trimmed[k];
                }
                address.name_is_unescaped = true;
            } else {
                address.name_in_text = trimmed.substr(1, i - 1);
            }
            const std::string_view rest = trim(trimmed.substr(i + 1));
            if (rest.empty() || rest.front() != '<') {
                throw_bad_address(field, text, "expected '<' after the quoted name");
            }
            open = trimmed.size() - rest.size();
        } else {
            open = trimmed.rfind('<');
            if (open == std::string_view::npos) throw_bad_address(field, text, "unmatched '>'");
            address.name_in_text = trim(trimmed.substr(0, open));
            // As an RFC 5322 list, `Doe, John <j@x.com>` is "Doe" and "John <j@x.com>"; "Doe"
            // is no address, so the whole is one name. With an address before the ',' it is a
            // real list, which taking the last one would silently cut down.
            if (contains_any(address.name_in_text, ",;") &&
                contains_any(address.name_in_text, "@<>")) {
                throw_bad_address(field, text,
                                  "holds several addresses: give each its own entry, or quote a "
                                  "display name that holds ',' or ';'");
            }
        }
        mailbox = trimmed.substr(open + 1, trimmed.size() - open - 2);
    }
    // A plain mailbox holds no '<', '>' or '"': the bare form is only searched for them (to
    // name the right problem) when it is not one.
    if (!is_plain_mailbox(mailbox)) {
        if (!bracketed && contains_any(trimmed, "<>\"")) {
            throw_bad_address(field, text, "unbalanced '<', '>' or '\"'");
        }
        if (const char* problem = mailbox_problem_by_rule(mailbox)) {
            throw_bad_address(field, text, problem);
        }
    }
    address.email = mailbox;
    return address;
}

}  // namespace detail

/// Parses one address. `field` names where it came from (e.g. "to[1]") for the error. A quoted
/// name is taken as written (escapes removed); any name may hold ',' or ';'.
/// @throws InvalidMessage naming `field` and the value when the text is not one valid address
///         (several addresses in one text included), holds a line break (header injection) or a
///         NUL byte, or is not UTF-8.
inline Address parse_address(std::string_view text, std::string_view field) {
    const detail::AddressView view = detail::parse_address_view(text, field);
    return Address{std::string(view.email), std::string(view.name())};
}

SENDGRID_BACKEND_NAMESPACE_END
