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

inline void append_echo_value(std::string& out, const std::string& path, const std::string& value,
                              FieldKind kind, std::string_view) {
    // Bytes are a file's content: its size says more than the bytes would.
    out += path + ": " +
           (kind == FieldKind::bytes ? std::to_string(value.size()) + " bytes" : value) + '\n';
}
inline void append_echo_value(std::string& out, const std::string& path,
                              const std::vector<std::string>& values, FieldKind, std::string_view) {
    out += path + ": " + echo_join(values) + '\n';
}
inline void append_echo_value(std::string& out, const std::string& path,
                              const std::map<std::string, std::string>& values, FieldKind,
                              std::string_view) {
    for (const auto& [key, value] : values) out += keyed(path, key) + ": " + value + '\n';
}
inline void append_echo_value(std::string& out, const std::string& path, bool value, FieldKind,
                              std::string_view) {
    out += path + (value ? ": true\n" : ": false\n");
}
inline void append_echo_value(std::string& out, const std::string& path, std::int64_t value,
                              FieldKind, std::string_view) {
    out += path + ": " + std::to_string(value) + '\n';
}
inline void append_echo_value(std::string& out, const std::string& path,
                              const std::vector<std::int64_t>& values, FieldKind,
                              std::string_view) {
    std::string joined;
    for (std::int64_t value : values)
        joined += (joined.empty() ? "" : ", ") + std::to_string(value);
    out += path + ": " + joined + '\n';
}
inline void append_echo_template_data(std::string& out, const std::string& path,
                                      const TemplateData& data) {
    out += path + ": ";
    try {
        // Checked first: dumping a value nested too deep could overflow the stack.
        TemplateDataAccess::check(data, path);
        out += TemplateDataAccess::dump(data, path);
    } catch (const InvalidMessage& invalid) {
        out += "(" + invalid.reason() + ")";
    }
    out += '\n';
}
template <class T>
void append_echo_value(std::string& out, const std::string& path, const std::optional<T>& value,
                       FieldKind kind, std::string_view parent) {
    append_echo_value(out, path, *value, kind, parent);
}
template <class Struct>
void append_echo_value(std::string& out, const std::string& path, const std::vector<Struct>& items,
                       FieldKind, std::string_view parent) {
    for (std::size_t i = 0; i < items.size(); ++i) {
        append_echo_fields(out, items[i], indexed(path, i) + ".", parent);
    }
}
template <class Struct>
void append_echo_value(std::string& out, const std::string& path, const Struct& value, FieldKind,
                       std::string_view parent) {
    // TemplateData here, not as an overload of its own: trying every value against its
    // converting constructor needs nlohmann/json.hpp, which the echo does without.
    if constexpr (std::is_same_v<Struct, TemplateData>) {
        append_echo_template_data(out, path, value);
    } else {
        append_echo_fields(out, value, path + ".", parent);
    }
}

template <class Struct>
void append_echo_fields(std::string& out, const Struct& s, const std::string& prefix,
                        std::string_view parent) {
    MessageFields<Struct>::each([&](const auto& field) {
        const auto& value = s.*field.member;
        if (echo_head_shows(parent, field.name)) return;
        if (field.write != FieldWrite::always && !holds_value(value)) return;
        append_echo_value(out, prefix + field.name, value, field.kind,
                          parent.empty() ? std::string_view(field.name) : parent);
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
