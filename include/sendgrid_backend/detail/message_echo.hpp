#pragma once

/// @file
/// `append_echo`: a message as readable text for SENDGRID_ECHO_TO_STDOUT. A head as a mail
/// client shows one, then a line for every other field the message holds, walked from its table
/// (message_fields.hpp) so that no field is left out of sight.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_fields.hpp"
#include "sendgrid_backend/template_data.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Whether the head shows the field `name`, of the message (`parent` empty) or of an item of
/// its field `parent`.
inline bool echo_head_shows(std::string_view parent, std::string_view name) noexcept {
    if (parent.empty()) {
        for (std::string_view shown : {"from_email", "to", "cc", "reply_to", "subject",
                                       "extra_headers", "content_subtype", "body"}) {
            if (name == shown) return true;
        }
        return false;
    }
    if (parent == "attachments") return name == "filename" || name == "content";
    if (parent == "alternatives") return name == "content" || name == "mimetype";
    return false;
}

inline std::string echo_join(const std::vector<std::string>& items) {
    std::string joined;
    for (const auto& item : items) joined += (joined.empty() ? "" : ", ") + item;
    return joined;
}

/// The lines of the fields of `s` that the head does not show, each `path: value`.
template <class Struct>
void append_echo_fields(std::string& out, const Struct& s, const std::string& prefix,
                        std::string_view parent);

/// Where a field of the walk is: the text so far, the path of its struct ("" for the message,
/// "personalizations[0]." ...) and the field of the message it lies under ("" for the message's
/// own fields), which says what the head showed already.
struct EchoPlace {
    std::string& out;
    const std::string& prefix;
    std::string_view parent;
};

/// Whether the echo gets a line for field `name`, which `holds` something or not.
inline bool echo_shows(const EchoPlace& place, const char* name, FieldWrite write, bool holds) {
    return (write == FieldWrite::always || holds) && !echo_head_shows(place.parent, name);
}
inline void append_echo_line(const EchoPlace& place, const char* name, const std::string& text) {
    place.out += place.prefix + name + ": " + text + '\n';
}

// One overload per kind of member: the walk below calls one per field, and only the nested
// structs make templates (the code of every other kind is compiled once).
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind kind,
                               FieldWrite write, const std::string& value) {
    if (!echo_shows(place, name, write, !value.empty())) return;
    // Bytes are a file's content: its size says more than the bytes would.
    append_echo_line(place, name,
                     kind == FieldKind::bytes ? std::to_string(value.size()) + " bytes" : value);
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::optional<std::string>& value) {
    if (echo_shows(place, name, write, value.has_value())) append_echo_line(place, name, *value);
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::vector<std::string>& values) {
    if (echo_shows(place, name, write, !values.empty()))
        append_echo_line(place, name, echo_join(values));
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::map<std::string, std::string>& values) {
    if (!echo_shows(place, name, write, !values.empty())) return;
    for (const auto& [key, value] : values)
        place.out += keyed(place.prefix + name, key) + ": " + value + '\n';
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, bool value) {
    if (echo_shows(place, name, write, value))
        append_echo_line(place, name, value ? "true" : "false");
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::optional<bool>& value) {
    if (echo_shows(place, name, write, value.has_value()))
        append_echo_line(place, name, *value ? "true" : "false");
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, std::int64_t value) {
    if (echo_shows(place, name, write, true)) append_echo_line(place, name, std::to_string(value));
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::optional<std::int64_t>& value) {
    if (echo_shows(place, name, write, value.has_value()))
        append_echo_line(place, name, std::to_string(*value));
}
inline void append_echo_member(const EchoPlace& place, const char* name, FieldKind,
                               FieldWrite write, const std::vector<std::int64_t>& values) {
    if (!echo_shows(place, name, write, !values.empty())) return;
    std::string joined;
    for (std::int64_t value : values)
        joined += (joined.empty() ? "" : ", ") + std::to_string(value);
    append_echo_line(place, name, joined);
}
inline void append_echo_template_data(const EchoPlace& place, const char* name,
                                      const TemplateData& data) {
    const std::string path = place.prefix + name;
    std::string text;
    try {
        // Checked first: dumping a value nested too deep could overflow the stack.
        TemplateDataAccess::check(data, path);
        text = TemplateDataAccess::dump(data, path);
    } catch (const InvalidMessage& invalid) {
        text = "(" + invalid.reason() + ")";
    }
    append_echo_line(place, name, text);
}
/// The field of the message that a nested struct's fields lie under.
inline std::string_view echo_parent(const EchoPlace& place, const char* name) noexcept {
    return place.parent.empty() ? std::string_view(name) : place.parent;
}
template <class Struct>
void append_echo_member(const EchoPlace& place, const char* name, FieldKind, FieldWrite write,
                        const Struct& value) {
    // TemplateData here, not as an overload of its own: trying every value against its
    // converting constructor needs nlohmann/json.hpp, which the echo does without.
    if constexpr (std::is_same_v<Struct, TemplateData>) {
        if (echo_shows(place, name, write, value.has_value()))
            append_echo_template_data(place, name, value);
    } else {
        if (echo_shows(place, name, write, true))
            append_echo_fields(place.out, value, place.prefix + name + ".",
                               echo_parent(place, name));
    }
}
template <class Struct>
void append_echo_member(const EchoPlace& place, const char* name, FieldKind, FieldWrite write,
                        const std::optional<Struct>& value) {
    if (echo_shows(place, name, write, value.has_value()))
        append_echo_fields(place.out, *value, place.prefix + name + ".", echo_parent(place, name));
}
template <class Struct>
void append_echo_member(const EchoPlace& place, const char* name, FieldKind, FieldWrite write,
                        const std::vector<Struct>& items) {
    if (!echo_shows(place, name, write, !items.empty())) return;
    const std::string path = place.prefix + name;
    for (std::size_t i = 0; i < items.size(); ++i)
        append_echo_fields(place.out, items[i], indexed(path, i) + ".", echo_parent(place, name));
}

template <class Struct>
void append_echo_fields(std::string& out, const Struct& s, const std::string& prefix,
                        std::string_view parent) {
    const EchoPlace place{out, prefix, parent};
    MessageFields<Struct>::each([&](const auto& field) {
        append_echo_member(place, field.name, field.kind, field.write, s.*field.member);
    });
}

/// Appends `message` as text: From, To, Cc, Reply-To, Subject, the extra headers, the
/// Content-Type and the body, a line per alternative and per attachment; then one line per other
/// field it holds (`bcc: ...`, `custom_args["k"]: v`, `mail_settings.footer.text: ...`); then a
/// line of 79 dashes. Holds nothing secret: the API key is not part of a message.
inline void append_echo(std::string& out, const EmailMessage& message) {
    out += "From: " + message.from_email + '\n';
    if (!message.to.empty()) out += "To: " + echo_join(message.to) + '\n';
    if (!message.cc.empty()) out += "Cc: " + echo_join(message.cc) + '\n';
    if (!message.reply_to.empty()) out += "Reply-To: " + echo_join(message.reply_to) + '\n';
    out += "Subject: " + message.subject + '\n';
    for (const auto& [name, value] : message.extra_headers) out += name + ": " + value + '\n';
    out += "Content-Type: text/" + message.content_subtype + "; charset=utf-8\n\n" + message.body +
           '\n';
    for (const auto& alternative : message.alternatives) {
        out += "[alternative " + alternative.mimetype + ", " +
               std::to_string(alternative.content.size()) + " bytes]\n";
    }
    for (const auto& attachment : message.attachments) {
        out += "[attachment " + attachment.filename + ", " +
               std::to_string(attachment.content.size()) + " bytes]\n";
    }
    append_echo_fields(out, message, std::string(), std::string_view());
    out += std::string(79, '-') + '\n';
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
