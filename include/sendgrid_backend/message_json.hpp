#pragma once

/// @file
/// An `EmailMessage` as JSON text and back, every field included (attachments as base64), for
/// storing a message to send later: a retry table, a queue entry. Not SendGrid's payload (that
/// is `build_payload`): this keeps the message itself, so it can be sent again through
/// `SendgridBackend` with every rule applied then.
///
/// @code
/// const std::string stored = sendgrid_backend::serialize_message(message);
/// sendgrid_backend::EmailMessage again = sendgrid_backend::deserialize_message(stored);
/// @endcode

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_fields.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The format's version, written as "v". A reader refuses versions it does not know.
inline constexpr int message_json_version = 1;

/// A field's path in errors, `prefix` + `name`, spelled out only for an error or a nested value.
struct MessageFieldPath {
    const std::string& prefix;  ///< "" or e.g. "personalizations[0]."
    const char* name;

    std::string str() const { return prefix + name; }
};

/// Writes the fields of one message into JSON as its table (message_fields.hpp) lists them,
/// checking that every text is UTF-8 (JSON cannot hold anything else; such a message could not
/// be sent anyway).
class MessageWriter {
  public:
    nlohmann::json write(const EmailMessage& m) {
        nlohmann::json j = nlohmann::json::object();
        j["v"] = message_json_version;
        write_fields(j, m, std::string());
        return j;
    }

  private:
    template <class Struct>
    static void write_fields(nlohmann::json& j, const Struct& s, const std::string& prefix) {
        MessageFields<Struct>::each([&](const auto& field) {
            const auto& value = s.*field.member;
            if (is_present(field, value)) {
                j[field.name] = as_json(value, field.kind, MessageFieldPath{prefix, field.name});
            }
        });
    }

    [[noreturn]] static void not_utf8(std::string field) {
        throw InvalidMessage(std::move(field), "is not valid UTF-8");
    }
    static nlohmann::json as_json(const std::string& value, FieldKind kind,
                                  const MessageFieldPath& path) {
        if (kind == FieldKind::bytes) return base64_encode(value);
        if (!is_valid_utf8(value)) not_utf8(path.str());
        return value;
    }
    static nlohmann::json as_json(const std::vector<std::string>& values, FieldKind,
                                  const MessageFieldPath& path) {
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (!is_valid_utf8(values[i])) not_utf8(indexed(path.str(), i));
        }
        return values;
    }
    static nlohmann::json as_json(const std::map<std::string, std::string>& values, FieldKind,
                                  const MessageFieldPath& path) {
        for (const auto& [name, value] : values) {
            if (!is_valid_utf8(name)) not_utf8(path.str());
            if (!is_valid_utf8(value)) not_utf8(keyed(path.str(), name));
        }
        return values;
    }
    static nlohmann::json as_json(bool value, FieldKind, const MessageFieldPath&) { return value; }
    static nlohmann::json as_json(std::int64_t value, FieldKind, const MessageFieldPath&) {
        return value;
    }
    static nlohmann::json as_json(const std::vector<std::int64_t>& values, FieldKind,
                                  const MessageFieldPath&) {
        return values;
    }
    /// Copying and dumping JSON recurse: a value nested too deep is refused before either.
    static nlohmann::json template_data_json(const TemplateData& data,
                                             const MessageFieldPath& path) {
        if (nests_deeper(*data, max_json_depth)) {
            throw InvalidMessage(path.str(), too_deep_json(max_json_depth));
        }
        return *data;
    }
    template <class T>
    static nlohmann::json as_json(const std::optional<T>& value, FieldKind kind,
                                  const MessageFieldPath& path) {
        return as_json(*value, kind, path);
    }
    template <class Struct>
    static nlohmann::json as_json(const std::vector<Struct>& items, FieldKind,
                                  const MessageFieldPath& path) {
        nlohmann::json array = nlohmann::json::array();
        for (std::size_t i = 0; i < items.size(); ++i) {
            nlohmann::json item = nlohmann::json::object();
            write_fields(item, items[i], indexed(path.str(), i) + ".");
            array.push_back(std::move(item));
        }
        return array;
    }
    template <class Struct>
    static nlohmann::json as_json(const Struct& value, FieldKind, const MessageFieldPath& path) {
        // TemplateData here, not as an overload: it converts from almost anything.
        if constexpr (std::is_same_v<Struct, TemplateData>) {
            return template_data_json(value, path);
        } else {
            nlohmann::json object = nlohmann::json::object();
            write_fields(object, value, path.str() + ".");
            return object;
        }
    }
};

/// Reads the fields back as the table lists them, refusing anything of the wrong type or
/// unknown (a field a newer version wrote would otherwise be dropped without a word).
class MessageReader {
  public:
    EmailMessage read(const nlohmann::json& j) {
        object(j, "message");
        const auto version = j.find("v");
        if (version == j.end() || !version->is_number_integer() ||
            version->get<std::int64_t>() != message_json_version) {
            throw InvalidStoredMessage("v", "is not format version 1 of a stored EmailMessage");
        }
        EmailMessage m;
        const std::string top;
        for (const auto& [key, value] : j.items()) {
            if (key != "v") read_field(m, key, value, top);
        }
        return m;
    }

  private:
    template <class Struct>
    static void read_fields(Struct& s, const nlohmann::json& j, const std::string& prefix) {
        for (const auto& [key, value] : j.items()) read_field(s, key, value, prefix);
    }
    /// Reads `value` into the field of `s` that `key` names.
    template <class Struct>
    static void read_field(Struct& s, const std::string& key, const nlohmann::json& value,
                           const std::string& prefix) {
        bool known = false;
        MessageFields<Struct>::each([&](const auto& field) {
            if (known || key != field.name) return;
            known = true;
            read(s.*field.member, field.kind, value, prefix + key);
        });
        if (!known) unknown(prefix + key);
    }

    [[noreturn]] static void unknown(std::string field) {
        if (field.empty() || field.back() == '.') field += R"("")";  // an empty key, named
        throw InvalidStoredMessage(std::move(field),
                                   "is not a field of a stored EmailMessage (written by a newer "
                                   "version?)");
    }
    static const nlohmann::json& object(const nlohmann::json& v, const std::string& field) {
        if (!v.is_object()) throw InvalidStoredMessage(field, "must be a JSON object");
        return v;
    }
    static std::string text(const nlohmann::json& v, const std::string& field) {
        if (!v.is_string()) throw InvalidStoredMessage(field, "must be a string");
        return v.get<std::string>();
    }
    static std::int64_t integer(const nlohmann::json& v, const std::string& field) {
        // nlohmann calls unsigned numbers integers too: those above INT64_MAX do not fit.
        const bool fits = v.is_number_unsigned()
                              ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)
                              : v.is_number_integer();
        if (!fits) throw InvalidStoredMessage(field, "must be an integer that fits 64 bits");
        return v.get<std::int64_t>();
    }

    static void read(std::string& out, FieldKind kind, const nlohmann::json& v,
                     const std::string& field) {
        if (kind != FieldKind::bytes) {
            out = text(v, field);
            return;
        }
        auto bytes = base64_decode(text(v, field));
        if (!bytes) throw InvalidStoredMessage(field, "is not base64");
        out = std::move(*bytes);
    }
    static void read(std::vector<std::string>& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        if (!v.is_array()) throw InvalidStoredMessage(field, "must be an array of strings");
        std::vector<std::string> values;
        for (std::size_t i = 0; i < v.size(); ++i) values.push_back(text(v[i], indexed(field, i)));
        out = std::move(values);
    }
    static void read(std::map<std::string, std::string>& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        object(v, field);
        std::map<std::string, std::string> values;
        for (const auto& [key, value] : v.items()) values[key] = text(value, keyed(field, key));
        out = std::move(values);
    }
    static void read(bool& out, FieldKind, const nlohmann::json& v, const std::string& field) {
        if (!v.is_boolean()) throw InvalidStoredMessage(field, "must be true or false");
        out = v.get<bool>();
    }
    static void read(std::int64_t& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        out = integer(v, field);
    }
    static void read(std::vector<std::int64_t>& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        if (!v.is_array()) throw InvalidStoredMessage(field, "must be an array of integers");
        std::vector<std::int64_t> values;
        for (std::size_t i = 0; i < v.size(); ++i) {
            values.push_back(integer(v[i], indexed(field, i)));
        }
        out = std::move(values);
    }
    static void read(TemplateData& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        out = object(v, field);
    }
    template <class T>
    static void read(std::optional<T>& out, FieldKind kind, const nlohmann::json& v,
                     const std::string& field) {
        T value{};
        read(value, kind, v, field);
        out = std::move(value);
    }
    template <class Struct>
    static void read(std::vector<Struct>& out, FieldKind, const nlohmann::json& v,
                     const std::string& field) {
        if (!v.is_array()) throw InvalidStoredMessage(field, "must be an array");
        std::vector<Struct> items;
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string item = indexed(field, i);
            Struct s;
            read_fields(s, object(v[i], item), item + ".");
            items.push_back(std::move(s));
        }
        out = std::move(items);
    }
    template <class Struct>
    static void read(Struct& out, FieldKind, const nlohmann::json& v, const std::string& field) {
        Struct s;
        read_fields(s, object(v, field), field + ".");
        out = std::move(s);
    }
};

}  // namespace detail

/// `message` as JSON text: every field its table (message_fields.hpp) lists, attachments as
/// base64. The outcome is not kept (it belongs to a send, not to the message).
/// @throws InvalidMessage naming a field that is not valid UTF-8 (JSON cannot carry it), or
///         template data nested deeper than 256 levels.
inline std::string serialize_message(const EmailMessage& message) {
    const nlohmann::json json = detail::MessageWriter().write(message);
    try {
        return json.dump();
    } catch (const nlohmann::json::type_error&) {
        // Only the free-form JSON fields are not checked text by text.
        throw InvalidMessage("dynamic_template_data", "holds text that is not valid UTF-8");
    }
}

/// The message `text` holds, as `serialize_message` wrote it.
/// @throws InvalidStoredMessage (an InvalidMessage) naming the field when `text` is not such
///         JSON: not JSON ("message"), another format version ("v"), a field of the wrong type
///         or an unknown one (its path, e.g. `personalizations[0].cc[1]`).
inline EmailMessage deserialize_message(std::string_view text) {
    std::string problem;
    const nlohmann::json json = detail::parse_json_text(text, &problem);
    if (json.is_discarded()) throw InvalidStoredMessage("message", problem);
    return detail::MessageReader().read(json);
}

SENDGRID_BACKEND_NAMESPACE_END
