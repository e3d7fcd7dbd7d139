#pragma once

/// @file
/// The payload's settings beside its addresses and content: headers, custom_args and
/// substitutions, categories, asm, ip_pool_name, batch_id, mail_settings and tracking_settings.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/batch_id.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload/limits.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// ---- headers, custom_args, substitutions: string maps ----

/// Headers SendGrid does not let a message set (case-insensitive).
inline constexpr std::string_view reserved_headers[] = {"x-sg-id",      "x-sg-eid",
                                                        "received",     "dkim-signature",
                                                        "content-type", "content-transfer-encoding",
                                                        "to",           "from",
                                                        "subject",      "reply-to",
                                                        "cc",           "bcc"};

/// One header of `field` ("extra_headers" or a personalization's "headers"): a printable
/// ASCII name SendGrid lets a message set, and a single-line value.
inline void check_header(std::string_view name, std::string_view value, std::string_view field) {
    const std::string path = keyed(field, name);
    if (name.empty()) throw InvalidMessage(path, "a header needs a name");
    require_single_line(name, path);
    for (char c : name) {
        if (c == ':' || c == ' ' || static_cast<unsigned char>(c) < 0x21 ||
            static_cast<unsigned char>(c) > 0x7e) {
            throw InvalidMessage(path, "a header name may only hold printable ASCII without ':'");
        }
    }
    for (auto reserved : reserved_headers) {
        if (iequals(name, reserved)) {
            throw InvalidMessage(path, "SendGrid does not allow setting this header");
        }
    }
    require_single_line(value, path);
}

/// The message's extra_headers, checked, but for Reply-To (which becomes reply_to).
inline std::map<std::string, std::string> collect_headers(
    const std::map<std::string, std::string>& extra_headers) {
    std::map<std::string, std::string> headers;
    for (const auto& [name, value] : extra_headers) {
        if (iequals(name, "reply-to")) continue;
        check_header(name, value, "extra_headers");
        headers[name] = value;
    }
    return headers;
}

/// `base` with a personalization's own headers (checked) set over it.
inline std::map<std::string, std::string> merge_headers(
    std::map<std::string, std::string> base, const std::map<std::string, std::string>& own,
    const std::string& field) {
    for (const auto& [name, value] : own) {
        check_header(name, value, field);
        base[name] = value;
    }
    return base;
}

/// The size of `{"k":"v",...}` as sent (escapes not counted).
inline std::size_t serialized_args_size(const std::map<std::string, std::string>& args) {
    std::size_t size = 2;
    for (const auto& [key, value] : args) size += key.size() + value.size() + 6;
    return args.empty() ? size : size - 1;
}

/// Keys and values of `field` in UTF-8; `limited`: custom_args and substitutions, which
/// SendGrid caps in size (headers are not).
inline void check_string_map(const std::map<std::string, std::string>& args,
                             const std::string& field, bool limited) {
    if (limited && serialized_args_size(args) > limits::max_args_bytes) {
        throw InvalidMessage(field,
                             "is " + std::to_string(serialized_args_size(args)) +
                                 " bytes; SendGrid allows at most 10000 per personalization");
    }
    for (const auto& [key, value] : args) {
        require_utf8(key, field);
        require_utf8(value, keyed(field, key));
    }
}

/// String key/value pairs (custom_args, substitutions, headers) as an object, after
/// check_string_map.
template <class Sink>
void write_string_map(Sink& sink, const std::map<std::string, std::string>& args,
                      const std::string& field, bool limited) {
    check_string_map(args, field, limited);
    sink.begin_object();
    for (const auto& [key, value] : args) {
        sink.key(key);
        sink.string(value);
    }
    sink.end_object();
}

// ---- categories, asm, ip_pool_name ----

inline void check_categories(const std::vector<std::string>& categories) {
    if (categories.size() > limits::max_categories) {
        throw InvalidMessage("categories", "has " + std::to_string(categories.size()) +
                                               " entries; SendGrid allows at most 10");
    }
    for (std::size_t i = 0; i < categories.size(); ++i) {
        const std::string field = indexed("categories", i);
        const std::string& category = categories[i];
        if (category.empty()) throw InvalidMessage(field, "is empty");
        if (!is_ascii(category)) throw InvalidMessage(field, "must be ASCII");
        require_single_line(category, field);
        if (category.size() > limits::max_category_length) {
            throw InvalidMessage(field, "is " + std::to_string(category.size()) +
                                            " characters; SendGrid allows at most 255");
        }
        for (std::size_t k = 0; k < i; ++k) {
            if (categories[k] == category) {
                throw InvalidMessage(field, quote_for_error(category) + " repeats categories[" +
                                                std::to_string(k) + "]");
            }
        }
    }
}

template <class Sink>
void write_categories(Sink& sink, const std::vector<std::string>& categories) {
    check_categories(categories);
    sink.key("categories");
    sink.begin_array();
    for (const auto& category : categories) sink.string(category);
    sink.end_array();
}

inline void check_unsubscribe_group(const UnsubscribeGroup& group) {
    if (!group.group_id) {
        throw InvalidMessage("unsubscribe_group.group_id", "is required by SendGrid's asm");
    }
    if (group.groups_to_display.size() > limits::max_groups_to_display) {
        throw InvalidMessage("unsubscribe_group.groups_to_display",
                             "has " + std::to_string(group.groups_to_display.size()) +
                                 " entries; SendGrid allows at most 25");
    }
}

/// The message's unsubscribe_group as SendGrid's "asm".
template <class Sink>
void write_unsubscribe_group(Sink& sink, const UnsubscribeGroup& group) {
    check_unsubscribe_group(group);
    sink.key("asm");
    sink.begin_object();
    sink.key("group_id");
    sink.integer(*group.group_id);
    if (!group.groups_to_display.empty()) {
        sink.key("groups_to_display");
        sink.begin_array();
        for (std::int64_t id : group.groups_to_display) sink.integer(id);
        sink.end_array();
    }
    sink.end_object();
}

inline void check_ip_pool_name(const std::string& name) {
    require_single_line(name, "ip_pool_name");
    std::size_t characters = 0;
    for (char c : name) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (characters < limits::min_ip_pool_name || characters > limits::max_ip_pool_name) {
        throw InvalidMessage("ip_pool_name", "has " + std::to_string(characters) +
                                                 " characters; SendGrid wants 2 to 64");
    }
}

template <class Sink>
void write_ip_pool_name(Sink& sink, const std::string& name) {
    check_ip_pool_name(name);
    sink.key("ip_pool_name");
    sink.string(name);
}

template <class Sink>
void write_batch_id(Sink& sink, const std::string& batch_id) {
    const std::string problem = batch_id_problem(batch_id);
    if (!problem.empty()) throw InvalidMessage("batch_id", problem);
    sink.key("batch_id");
    sink.string(batch_id);
}

// ---- mail_settings, tracking_settings ----

/// {"enable": value}, the shape of every SendGrid on/off setting (left open for more keys).
template <class Sink>
void begin_enable(Sink& sink, bool value) {
    sink.begin_object();
    sink.key("enable");
    sink.boolean(value);
}

/// `"key": value` unless the value is empty (SendGrid's optional texts).
template <class Sink>
void write_optional_text(Sink& sink, const char* key, const std::string& value) {
    if (value.empty()) return;
    sink.key(key);
    sink.string(value);
}

inline void check_mail_settings(const MailSettings& settings) {
    if (settings.footer) {
        require_mail_text(settings.footer->text, "mail_settings.footer.text");
        require_mail_text(settings.footer->html, "mail_settings.footer.html");
    }
}

/// mail_settings: the backend's sandbox mode, then the message's own settings.
template <class Sink>
void write_mail_settings(Sink& sink, const MailSettings& settings, bool sandbox_mode) {
    check_mail_settings(settings);
    sink.key("mail_settings");
    sink.begin_object();
    sink.key("sandbox_mode");
    begin_enable(sink, sandbox_mode);
    sink.end_object();
    auto flag = [&sink](const char* name, const std::optional<bool>& value) {
        if (!value) return;
        sink.key(name);
        begin_enable(sink, *value);
        sink.end_object();
    };
    flag("bypass_list_management", settings.bypass_list_management);
    flag("bypass_spam_management", settings.bypass_spam_management);
    flag("bypass_bounce_management", settings.bypass_bounce_management);
    flag("bypass_unsubscribe_management", settings.bypass_unsubscribe_management);
    if (settings.footer) {
        sink.key("footer");
        begin_enable(sink, settings.footer->enable);
        write_optional_text(sink, "text", settings.footer->text);
        write_optional_text(sink, "html", settings.footer->html);
        sink.end_object();
    }
    sink.end_object();
}

/// The backend's tracking settings, which a message's TrackingSettings override one by one.
struct TrackingDefaults {
    bool email_opens;
    bool clicks_html;
    bool clicks_plain;
};

inline std::array<std::pair<const char*, const std::string*>, 5> utm_fields(
    const GoogleAnalytics& g) {
    return {{{"utm_source", &g.utm_source},
             {"utm_medium", &g.utm_medium},
             {"utm_term", &g.utm_term},
             {"utm_content", &g.utm_content},
             {"utm_campaign", &g.utm_campaign}}};
}

inline void check_tracking_settings(const TrackingSettings& overrides) {
    if (!overrides.open_tracking_substitution_tag.empty()) {
        require_single_line(overrides.open_tracking_substitution_tag,
                            "tracking_settings.open_tracking_substitution_tag");
    }
    if (overrides.subscription_tracking) {
        const SubscriptionTracking& s = *overrides.subscription_tracking;
        const std::string field = "tracking_settings.subscription_tracking";
        require_mail_text(s.text, field + ".text");
        require_mail_text(s.html, field + ".html");
        require_utf8(s.substitution_tag, field + ".substitution_tag");
    }
    if (overrides.ganalytics) {
        for (const auto& [name, value] : utm_fields(*overrides.ganalytics)) {
            require_single_line(*value, std::string("tracking_settings.ganalytics.") + name);
        }
    }
}

template <class Sink>
void write_subscription_tracking(Sink& sink, const SubscriptionTracking& s) {
    sink.key("subscription_tracking");
    begin_enable(sink, s.enable);
    write_optional_text(sink, "text", s.text);
    write_optional_text(sink, "html", s.html);
    write_optional_text(sink, "substitution_tag", s.substitution_tag);
    sink.end_object();
}

template <class Sink>
void write_ganalytics(Sink& sink, const GoogleAnalytics& g) {
    sink.key("ganalytics");
    begin_enable(sink, g.enable);
    for (const auto& [name, value] : utm_fields(g)) write_optional_text(sink, name, *value);
    sink.end_object();
}

/// tracking_settings: open and click tracking always (the message's choice or else the
/// backend's), subscription tracking and Google Analytics when the message sets them.
template <class Sink>
void write_tracking_settings(Sink& sink, const TrackingSettings& overrides,
                             const TrackingDefaults& defaults) {
    check_tracking_settings(overrides);
    sink.key("tracking_settings");
    sink.begin_object();
    sink.key("open_tracking");
    begin_enable(sink, overrides.track_email_opens.value_or(defaults.email_opens));
    write_optional_text(sink, "substitution_tag", overrides.open_tracking_substitution_tag);
    sink.end_object();
    sink.key("click_tracking");
    begin_enable(sink, overrides.track_clicks_html.value_or(defaults.clicks_html));
    sink.key("enable_text");
    sink.boolean(overrides.track_clicks_plain.value_or(defaults.clicks_plain));
    sink.end_object();
    if (overrides.subscription_tracking) {
        write_subscription_tracking(sink, *overrides.subscription_tracking);
    }
    if (overrides.ganalytics) write_ganalytics(sink, *overrides.ganalytics);
    sink.end_object();
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
