#pragma once

/// @file
/// `EmailMessage`'s one schema: each field of the message and of its nested structs with its
/// JSON name, its member and its kind. The stored JSON (message_json.hpp) and the echo
/// (detail/message_echo.hpp) walk it, so a field listed here reaches every form of a message.
///
/// @code
/// // Every field of a personalization that the stored JSON would write:
/// detail::MessageFields<Personalization>::each([&](const auto& field) {
///     if (detail::is_present(field, p.*field.member)) std::cout << field.name << '\n';
/// });
/// @endcode

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/template_data.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// What a field holds, and so how each form writes, reads and shows it.
enum class FieldKind : unsigned char {
    text,              ///< std::string of UTF-8 text
    optional_text,     ///< std::optional<std::string>
    text_list,         ///< std::vector<std::string>
    text_map,          ///< std::map<std::string, std::string>
    boolean,           ///< bool
    optional_boolean,  ///< std::optional<bool>
    integer,           ///< std::int64_t
    optional_integer,  ///< std::optional<std::int64_t>
    integer_list,      ///< std::vector<std::int64_t>
    template_data,     ///< TemplateData, a JSON object
    bytes,             ///< std::string of any bytes (base64 in JSON)
    object,            ///< a struct with a table of its own
    optional_object,   ///< std::optional of such a struct
    object_list,       ///< std::vector of such structs
};

/// When the stored JSON and the echo leave a field out.
enum class FieldWrite : unsigned char {
    /// Left out when it holds nothing: empty text, list or map, false, an empty optional. An
    /// optional that holds a value is written, even an empty text.
    when_set,
    /// Written even when empty or false (`content_subtype`, the `enable` flags, the settings).
    always,
};

/// One entry of a table: `Struct::*member`, named `name` in JSON and in error paths.
template <class Struct, class Member>
struct Field {
    const char* name;
    Member Struct::*member;
    FieldKind kind;
    FieldWrite write;
};

/// The makers of table entries, one per kind: each takes only a member of its kind's type, so
/// an entry cannot claim a kind its member does not have.
namespace fields {

template <class S>
constexpr Field<S, std::string> text(const char* name, std::string S::*member,
                                     FieldWrite write = FieldWrite::when_set) {
    return {name, member, FieldKind::text, write};
}
template <class S>
constexpr Field<S, std::optional<std::string>> optional_text(
    const char* name, std::optional<std::string> S::*member) {
    return {name, member, FieldKind::optional_text, FieldWrite::when_set};
}
template <class S>
constexpr Field<S, std::vector<std::string>> text_list(const char* name,
                                                       std::vector<std::string> S::*member) {
    return {name, member, FieldKind::text_list, FieldWrite::when_set};
}
template <class S>
constexpr Field<S, std::map<std::string, std::string>> text_map(
    const char* name, std::map<std::string, std::string> S::*member) {
    return {name, member, FieldKind::text_map, FieldWrite::when_set};
}
template <class S>
constexpr Field<S, bool> boolean(const char* name, bool S::*member,
                                 FieldWrite write = FieldWrite::when_set) {
    return {name, member, FieldKind::boolean, write};
}
template <class S>
constexpr Field<S, std::optional<bool>> optional_boolean(const char* name,
                                                         std::optional<bool> S::*member) {
    return {name, member, FieldKind::optional_boolean, FieldWrite::when_set};
}
template <class S>
constexpr Field<S, std::int64_t> integer(const char* name, std::int64_t S::*member) {
    return {name, member, FieldKind::integer, FieldWrite::always};
}
template <class S>
constexpr Field<S, std::optional<std::int64_t>> optional_integer(
    const char* name, std::optional<std::int64_t> S::*member) {
    return {name, member, FieldKind::optional_integer, FieldWrite::when_set};
}
template <class S>
constexpr Field<S, std::vector<std::int64_t>> integer_list(
    const char* name, std::vector<std::int64_t> S::*member,
    FieldWrite write = FieldWrite::when_set) {
    return {name, member, FieldKind::integer_list, write};
}
template <class S>
constexpr Field<S, TemplateData> template_data(const char* name, TemplateData S::*member) {
    return {name, member, FieldKind::template_data, FieldWrite::when_set};
}
/// Attachment content: any bytes, always written (base64 in JSON, its size in the echo).
template <class S>
constexpr Field<S, std::string> bytes(const char* name, std::string S::*member) {
    return {name, member, FieldKind::bytes, FieldWrite::always};
}
// The nested kinds take any type; walking one without a MessageFields table does not compile.
template <class S, class T>
constexpr Field<S, T> object(const char* name, T S::*member) {
    return {name, member, FieldKind::object, FieldWrite::always};
}
template <class S, class T>
constexpr Field<S, std::optional<T>> optional_object(const char* name,
                                                     std::optional<T> S::*member) {
    return {name, member, FieldKind::optional_object, FieldWrite::when_set};
}
template <class S, class T>
constexpr Field<S, std::vector<T>> object_list(const char* name, std::vector<T> S::*member) {
    return {name, member, FieldKind::object_list, FieldWrite::when_set};
}

}  // namespace fields

/// Hands `visit` one table entry made at compile time: a constant, so that the makers below
/// are not compiled into the program (every file that sends walks the table for the echo).
#define SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, entry)     \
    do {                                                      \
        static constexpr auto sendgrid_backend_field = entry; \
        visit(sendgrid_backend_field);                        \
    } while (false)

/// The table of a struct: `each(visit)` calls `visit(field)` for each of its fields, in the
/// order the stored JSON checks them (the order of the members), with a `Field<T, Member>`.
/// Only the structs below have one.
template <class T>
struct MessageFields;

template <>
struct MessageFields<Attachment> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("filename", &Attachment::filename));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, bytes("content", &Attachment::content));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("mimetype", &Attachment::mimetype));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("content_id", &Attachment::content_id));
    }
};

template <>
struct MessageFields<Alternative> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, text("content", &Alternative::content, FieldWrite::always));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, text("mimetype", &Alternative::mimetype, FieldWrite::always));
    }
};

template <>
struct MessageFields<Personalization> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using P = Personalization;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("to", &P::to));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("cc", &P::cc));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("bcc", &P::bcc));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("subject", &P::subject));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("headers", &P::headers));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("substitutions", &P::substitutions));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, template_data("dynamic_template_data", &P::dynamic_template_data));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("custom_args", &P::custom_args));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, optional_integer("send_at", &P::send_at));
    }
};

template <>
struct MessageFields<UnsubscribeGroup> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_integer("group_id", &UnsubscribeGroup::group_id));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, integer_list("groups_to_display", &UnsubscribeGroup::groups_to_display,
                                FieldWrite::always));
    }
};

template <>
struct MessageFields<Footer> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit,
                                            boolean("enable", &Footer::enable, FieldWrite::always));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("text", &Footer::text));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("html", &Footer::html));
    }
};

template <>
struct MessageFields<MailSettings> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using M = MailSettings;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("bypass_list_management", &M::bypass_list_management));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("bypass_spam_management", &M::bypass_spam_management));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("bypass_bounce_management", &M::bypass_bounce_management));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit,
            optional_boolean("bypass_unsubscribe_management", &M::bypass_unsubscribe_management));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, optional_object("footer", &M::footer));
    }
};

template <>
struct MessageFields<SubscriptionTracking> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using S = SubscriptionTracking;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit,
                                            boolean("enable", &S::enable, FieldWrite::always));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("text", &S::text));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("html", &S::html));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("substitution_tag", &S::substitution_tag));
    }
};

template <>
struct MessageFields<GoogleAnalytics> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using G = GoogleAnalytics;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit,
                                            boolean("enable", &G::enable, FieldWrite::always));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("utm_source", &G::utm_source));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("utm_medium", &G::utm_medium));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("utm_term", &G::utm_term));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("utm_content", &G::utm_content));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("utm_campaign", &G::utm_campaign));
    }
};

template <>
struct MessageFields<TrackingSettings> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using T = TrackingSettings;
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("track_email_opens", &T::track_email_opens));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, text("open_tracking_substitution_tag", &T::open_tracking_substitution_tag));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("track_clicks_html", &T::track_clicks_html));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_boolean("track_clicks_plain", &T::track_clicks_plain));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_object("subscription_tracking", &T::subscription_tracking));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, optional_object("ganalytics", &T::ganalytics));
    }
};

/// Every field of the message but `outcome`, which belongs to a send, not to the message.
template <>
struct MessageFields<EmailMessage> {
    template <class Visit>
    static void each(Visit&& visit) {
        using namespace fields;
        using E = EmailMessage;
        // Django's fields
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("subject", &E::subject));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("body", &E::body));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("from_email", &E::from_email));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("to", &E::to));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("cc", &E::cc));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("bcc", &E::bcc));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("reply_to", &E::reply_to));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("extra_headers", &E::extra_headers));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, object_list("attachments", &E::attachments));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, object_list("alternatives", &E::alternatives));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, text("content_subtype", &E::content_subtype, FieldWrite::always));
        // SendGrid's extras
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("template_id", &E::template_id));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, template_data("dynamic_template_data", &E::dynamic_template_data));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("substitutions", &E::substitutions));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit,
                                            object_list("personalizations", &E::personalizations));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, boolean("make_private", &E::make_private));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("categories", &E::categories));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_map("custom_args", &E::custom_args));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(
            visit, optional_object("unsubscribe_group", &E::unsubscribe_group));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, optional_text("ip_pool_name", &E::ip_pool_name));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, optional_integer("send_at", &E::send_at));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text("batch_id", &E::batch_id));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, text_list("reply_to_list", &E::reply_to_list));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit, object("mail_settings", &E::mail_settings));
        SENDGRID_BACKEND_DETAIL_VISIT_FIELD(visit,
                                            object("tracking_settings", &E::tracking_settings));
    }
};

/// Whether a value holds something (see FieldWrite::when_set). A nested struct always does.
inline bool holds_value(const std::string& value) noexcept { return !value.empty(); }
inline bool holds_value(const std::map<std::string, std::string>& value) noexcept {
    return !value.empty();
}
inline bool holds_value(bool value) noexcept { return value; }
inline bool holds_value(std::int64_t) noexcept { return true; }
template <class T>
bool holds_value(const std::vector<T>& value) noexcept {
    return !value.empty();
}
template <class T>
bool holds_value(const std::optional<T>& value) noexcept {
    return value.has_value();
}
template <class T>
bool holds_value(const T& value) noexcept {
    // TemplateData here, not as an overload of its own: trying every value against its
    // converting constructor needs nlohmann/json.hpp, which this header does not include.
    if constexpr (std::is_same_v<T, TemplateData>) {
        return value.has_value();
    } else {
        return true;
    }
}

/// Whether the stored JSON writes `field` holding `value`, and the echo shows it.
template <class Struct, class Member>
bool is_present(const Field<Struct, Member>& field, const Member& value) noexcept {
    return field.write == FieldWrite::always || holds_value(value);
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
