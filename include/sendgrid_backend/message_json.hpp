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
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The format's version, written as "v". A reader refuses versions it does not know.
inline constexpr int message_json_version = 1;

/// Writes the fields of one message into JSON, checking that every text is UTF-8 (JSON cannot
/// hold anything else; such a message could not be sent anyway).
class MessageWriter {
  public:
    nlohmann::json write(const EmailMessage& m) {
        nlohmann::json j = nlohmann::json::object();
        j["v"] = message_json_version;
        text(j, "subject", m.subject);
        text(j, "body", m.body);
        text(j, "from_email", m.from_email);
        list(j, "to", m.to);
        list(j, "cc", m.cc);
        list(j, "bcc", m.bcc);
        list(j, "reply_to", m.reply_to);
        map(j, "extra_headers", m.extra_headers);
        if (!m.attachments.empty()) {
            nlohmann::json items = nlohmann::json::array();
            for (std::size_t i = 0; i < m.attachments.size(); ++i) {
                const Attachment& a = m.attachments[i];
                const std::string field = "attachments[" + std::to_string(i) + "]";
                nlohmann::json item = nlohmann::json::object();
                text(item, "filename", a.filename, field + ".filename");
                item["content"] = base64_encode(a.content);  // bytes, not text
                text(item, "mimetype", a.mimetype, field + ".mimetype");
                text(item, "content_id", a.content_id, field + ".content_id");
                items.push_back(std::move(item));
            }
            j["attachments"] = std::move(items);
        }
        if (!m.alternatives.empty()) {
            nlohmann::json items = nlohmann::json::array();
            for (std::size_t i = 0; i < m.alternatives.size(); ++i) {
                const std::string field = "alternatives[" + std::to_string(i) + "]";
                nlohmann::json item = nlohmann::json::object();
                text(item, "content", m.alternatives[i].content, field + ".content", true);
                text(item, "mimetype", m.alternatives[i].mimetype, field + ".mimetype", true);
                items.push_back(std::move(item));
            }
            j["alternatives"] = std::move(items);
        }
        text(j, "content_subtype", m.content_subtype, "content_subtype", true);
        text(j, "template_id", m.template_id);
        template_data(j, m.dynamic_template_data, "dynamic_template_data");
        map(j, "substitutions", m.substitutions);
        if (!m.personalizations.empty()) {
            nlohmann::json items = nlohmann::json::array();
            for (std::size_t i = 0; i < m.personalizations.size(); ++i) {
                items.push_back(personalization(m.personalizations[i],
                                                "personalizations[" + std::to_string(i) + "]"));
            }
            j["personalizations"] = std::move(items);
        }
        if (m.make_private) j["make_private"] = true;
        list(j, "categories", m.categories);
        map(j, "custom_args", m.custom_args);
        if (m.unsubscribe_group) {
            nlohmann::json group = nlohmann::json::object();
            if (m.unsubscribe_group->group_id) group["group_id"] = *m.unsubscribe_group->group_id;
            group["groups_to_display"] = m.unsubscribe_group->groups_to_display;
            j["unsubscribe_group"] = std::move(group);
        }
        if (m.ip_pool_name) text(j, "ip_pool_name", *m.ip_pool_name, "ip_pool_name", true);
        if (m.send_at) j["send_at"] = *m.send_at;
        list(j, "reply_to_list", m.reply_to_list);
        j["mail_settings"] = mail_settings(m.mail_settings);
        j["tracking_settings"] = tracking_settings(m.tracking_settings);
        return j;
    }

  private:
    static void check(std::string_view value, const std::string& field) {
        if (!is_valid_utf8(value)) throw InvalidMessage(field, "is not valid UTF-8");
    }
    /// Empty texts are left out unless `always`.
    static void text(nlohmann::json& j, const char* key, const std::string& value,
                     const std::string& field = "", bool always = false) {
        if (value.empty() && !always) return;
        check(value, field.empty() ? key : field);
        j[key] = value;
    }
    static void list(nlohmann::json& j, const char* key, const std::vector<std::string>& values,
                     const std::string& prefix = "") {
        if (values.empty()) return;
        for (std::size_t i = 0; i < values.size(); ++i) {
            check(values[i], prefix + key + "[" + std::to_string(i) + "]");
        }
        j[key] = values;
    }
    static void map(nlohmann::json& j, const char* key,
                    const std::map<std::string, std::string>& values,
                    const std::string& prefix = "") {
        if (values.empty()) return;
        for (const auto& [name, value] : values) {
            const std::string field = prefix + key + "[\"" + name + "\"]";
            check(name, prefix + key);
            check(value, field);
        }
        j[key] = values;
    }
    /// Copying and dumping JSON recurse: a value nested too deep is refused before either.
    static void template_data(nlohmann::json& j, const TemplateData& data,
                              const std::string& field) {
        if (!data) return;
        if (nests_deeper(*data, max_json_depth))
            throw InvalidMessage(field, too_deep_json(max_json_depth));
        j["dynamic_template_data"] = *data;
    }
    static nlohmann::json personalization(const Personalization& p, const std::string& field) {
        nlohmann::json j = nlohmann::json::object();
        const std::string prefix = field + ".";
        list(j, "to", p.to, prefix);
        list(j, "cc", p.cc, prefix);
        list(j, "bcc", p.bcc, prefix);
        text(j, "subject", p.subject, prefix + "subject");
        map(j, "headers", p.headers, prefix);
        map(j, "substitutions", p.substitutions, prefix);
        template_data(j, p.dynamic_template_data, prefix + "dynamic_template_data");
        map(j, "custom_args", p.custom_args, prefix);
        if (p.send_at) j["send_at"] = *p.send_at;
        return j;
    }
    static nlohmann::json mail_settings(const MailSettings& s) {
        nlohmann::json j = nlohmann::json::object();
        auto flag = [&j](const char* key, const std::optional<bool>& value) {
            if (value) j[key] = *value;
        };
        flag("bypass_list_management", s.bypass_list_management);
        flag("bypass_spam_management", s.bypass_spam_management);
        flag("bypass_bounce_management", s.bypass_bounce_management);
        flag("bypass_unsubscribe_management", s.bypass_unsubscribe_management);
        if (s.footer) {
            nlohmann::json footer = {{"enable", s.footer->enable}};
            text(footer, "text", s.footer->text, "mail_settings.footer.text");
            text(footer, "html", s.footer->html, "mail_settings.footer.html");
            j["footer"] = std::move(footer);
        }
        return j;
    }
    static nlohmann::json tracking_settings(const TrackingSettings& s) {
        nlohmann::json j = nlohmann::json::object();
        if (s.track_email_opens) j["track_email_opens"] = *s.track_email_opens;
        text(j, "open_tracking_substitution_tag", s.open_tracking_substitution_tag,
             "tracking_settings.open_tracking_substitution_tag");
        if (s.track_clicks_html) j["track_clicks_html"] = *s.track_clicks_html;
        if (s.track_clicks_plain) j["track_clicks_plain"] = *s.track_clicks_plain;
        if (s.subscription_tracking) {
            const SubscriptionTracking& t = *s.subscription_tracking;
            const std::string f = "tracking_settings.subscription_tracking.";
            nlohmann::json sub = {{"enable", t.enable}};
            text(sub, "text", t.text, f + "text");
            text(sub, "html", t.html, f + "html");
            text(sub, "substitution_tag", t.substitution_tag, f + "substitution_tag");
            j["subscription_tracking"] = std::move(sub);
        }
        if (s.ganalytics) {
            const GoogleAnalytics& g = *s.ganalytics;
            const std::string f = "tracking_settings.ganalytics.";
            nlohmann::json ga = {{"enable", g.enable}};
            text(ga, "utm_source", g.utm_source, f + "utm_source");
            text(ga, "utm_medium", g.utm_medium, f + "utm_medium");
            text(ga, "utm_term", g.utm_term, f + "utm_term");
            text(ga, "utm_content", g.utm_content, f + "utm_content");
            text(ga, "utm_campaign", g.utm_campaign, f + "utm_campaign");
            j["ganalytics"] = std::move(ga);
        }
        return j;
    }
};

/// Reads the fields back, refusing anything of the wrong type or unknown (a field a newer
/// version wrote would otherwise be dropped without a word).
class MessageReader {
  public:
    EmailMessage read(const nlohmann::json& j) {
        object(j, "message");
        const auto version = j.find("v");
        if (version == j.end() || !version->is_number_integer() ||
            version->get<std::int64_t>() != message_json_version) {
            throw InvalidMessage("v", "is not format version 1 of a stored EmailMessage");
        }
        EmailMessage m;
        for (const auto& [key, value] : j.items()) {
            if (key == "v") continue;
            if (key == "subject")
                m.subject = text(value, key);
            else if (key == "body")
                m.body = text(value, key);
            else if (key == "from_email")
                m.from_email = text(value, key);
            else if (key == "to")
                m.to = list(value, key);
            else if (key == "cc")
                m.cc = list(value, key);
            else if (key == "bcc")
                m.bcc = list(value, key);
            else if (key == "reply_to")
                m.reply_to = list(value, key);
            else if (key == "extra_headers")
                m.extra_headers = map(value, key);
            else if (key == "attachments")
                m.attachments = attachments(value);
            else if (key == "alternatives")
                m.alternatives = alternatives(value);
            else if (key == "content_subtype")
                m.content_subtype = text(value, key);
            else if (key == "template_id")
                m.template_id = text(value, key);
            else if (key == "dynamic_template_data")
                m.dynamic_template_data = object(value, key);
            else if (key == "substitutions")
                m.substitutions = map(value, key);
            else if (key == "personalizations")
                m.personalizations = personalizations(value);
            else if (key == "make_private")
                m.make_private = boolean(value, key);
            else if (key == "categories")
                m.categories = list(value, key);
            else if (key == "custom_args")
                m.custom_args = map(value, key);
            else if (key == "unsubscribe_group")
                m.unsubscribe_group = group(value);
            else if (key == "ip_pool_name")
                m.ip_pool_name = text(value, key);
            else if (key == "send_at")
                m.send_at = integer(value, key);
            else if (key == "reply_to_list")
                m.reply_to_list = list(value, key);
            else if (key == "mail_settings")
                m.mail_settings = mail_settings(value);
            else if (key == "tracking_settings")
                m.tracking_settings = tracking_settings(value);
            else
                unknown(key);
        }
        return m;
    }

  private:
    [[noreturn]] static void unknown(std::string field) {
        if (field.empty() || field.back() == '.') field += R"("")";  // an empty key, named
        throw InvalidMessage(std::move(field),
                             "is not a field of a stored EmailMessage (written by a newer "
                             "version?)");
    }
    static const nlohmann::json& object(const nlohmann::json& v, const std::string& field) {
        if (!v.is_object()) throw InvalidMessage(field, "must be a JSON object");
        return v;
    }
    static std::string text(const nlohmann::json& v, const std::string& field) {
        if (!v.is_string()) throw InvalidMessage(field, "must be a string");
        return v.get<std::string>();
    }
    static bool boolean(const nlohmann::json& v, const std::string& field) {
        if (!v.is_boolean()) throw InvalidMessage(field, "must be true or false");
        return v.get<bool>();
    }
    static std::int64_t integer(const nlohmann::json& v, const std::string& field) {
        // nlohmann calls unsigned numbers integers too: those above INT64_MAX do not fit.
        const bool fits = v.is_number_unsigned()
                              ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)
                              : v.is_number_integer();
        if (!fits) throw InvalidMessage(field, "must be an integer that fits 64 bits");
        return v.get<std::int64_t>();
    }
    static std::vector<std::string> list(const nlohmann::json& v, const std::string& field) {
        if (!v.is_array()) throw InvalidMessage(field, "must be an array of strings");
        std::vector<std::string> values;
        for (std::size_t i = 0; i < v.size(); ++i) {
            values.push_back(text(v[i], field + "[" + std::to_string(i) + "]"));
        }
        return values;
    }
    static std::map<std::string, std::string> map(const nlohmann::json& v,
                                                  const std::string& field) {
        object(v, field);
        std::map<std::string, std::string> values;
        for (const auto& [key, value] : v.items()) {
            values[key] = text(value, field + "[\"" + key + "\"]");
        }
        return values;
    }
    static std::vector<Attachment> attachments(const nlohmann::json& v) {
        if (!v.is_array()) throw InvalidMessage("attachments", "must be an array");
        std::vector<Attachment> items;
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string field = "attachments[" + std::to_string(i) + "]";
            Attachment a;
            for (const auto& [key, value] : object(v[i], field).items()) {
                const std::string path = field + "." + key;
                if (key == "filename")
                    a.filename = text(value, path);
                else if (key == "mimetype")
                    a.mimetype = text(value, path);
                else if (key == "content_id")
                    a.content_id = text(value, path);
                else if (key == "content") {
                    auto bytes = base64_decode(text(value, path));
                    if (!bytes) throw InvalidMessage(path, "is not base64");
                    a.content = std::move(*bytes);
                } else
                    unknown(path);
            }
            items.push_back(std::move(a));
        }
        return items;
    }
    static std::vector<Alternative> alternatives(const nlohmann::json& v) {
        if (!v.is_array()) throw InvalidMessage("alternatives", "must be an array");
        std::vector<Alternative> items;
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string field = "alternatives[" + std::to_string(i) + "]";
            Alternative a;
            for (const auto& [key, value] : object(v[i], field).items()) {
                if (key == "content")
                    a.content = text(value, field + ".content");
                else if (key == "mimetype")
                    a.mimetype = text(value, field + ".mimetype");
                else
                    unknown(field + "." + key);
            }
            items.push_back(std::move(a));
        }
        return items;
    }
    static std::vector<Personalization> personalizations(const nlohmann::json& v) {
        if (!v.is_array()) throw InvalidMessage("personalizations", "must be an array");
        std::vector<Personalization> items;
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string field = "personalizations[" + std::to_string(i) + "]";
            Personalization p;
            for (const auto& [key, value] : object(v[i], field).items()) {
                const std::string path = field + "." + key;
                if (key == "to")
                    p.to = list(value, path);
                else if (key == "cc")
                    p.cc = list(value, path);
                else if (key == "bcc")
                    p.bcc = list(value, path);
                else if (key == "subject")
                    p.subject = text(value, path);
                else if (key == "headers")
                    p.headers = map(value, path);
                else if (key == "substitutions")
                    p.substitutions = map(value, path);
                else if (key == "dynamic_template_data")
                    p.dynamic_template_data = object(value, path);
                else if (key == "custom_args")
                    p.custom_args = map(value, path);
                else if (key == "send_at")
                    p.send_at = integer(value, path);
                else
                    unknown(path);
            }
            items.push_back(std::move(p));
        }
        return items;
    }
    static UnsubscribeGroup group(const nlohmann::json& v) {
        UnsubscribeGroup g;
        for (const auto& [key, value] : object(v, "unsubscribe_group").items()) {
            const std::string path = "unsubscribe_group." + key;
            if (key == "group_id") {
                g.group_id = integer(value, path);
            } else if (key == "groups_to_display") {
                if (!value.is_array()) throw InvalidMessage(path, "must be an array of integers");
                for (std::size_t i = 0; i < value.size(); ++i) {
                    g.groups_to_display.push_back(
                        integer(value[i], path + "[" + std::to_string(i) + "]"));
                }
            } else {
                unknown(path);
            }
        }
        return g;
    }
    static MailSettings mail_settings(const nlohmann::json& v) {
        MailSettings s;
        for (const auto& [key, value] : object(v, "mail_settings").items()) {
            const std::string path = "mail_settings." + key;
            if (key == "bypass_list_management")
                s.bypass_list_management = boolean(value, path);
            else if (key == "bypass_spam_management")
                s.bypass_spam_management = boolean(value, path);
            else if (key == "bypass_bounce_management")
                s.bypass_bounce_management = boolean(value, path);
            else if (key == "bypass_unsubscribe_management")
                s.bypass_unsubscribe_management = boolean(value, path);
            else if (key == "footer") {
                Footer footer;
                for (const auto& [k, item] : object(value, path).items()) {
                    if (k == "enable")
                        footer.enable = boolean(item, path + ".enable");
                    else if (k == "text")
                        footer.text = text(item, path + ".text");
                    else if (k == "html")
                        footer.html = text(item, path + ".html");
                    else
                        unknown(path + "." + k);
                }
                s.footer = std::move(footer);
            } else
                unknown(path);
        }
        return s;
    }
    static TrackingSettings tracking_settings(const nlohmann::json& v) {
        TrackingSettings s;
        for (const auto& [key, value] : object(v, "tracking_settings").items()) {
            const std::string path = "tracking_settings." + key;
            if (key == "track_email_opens")
                s.track_email_opens = boolean(value, path);
            else if (key == "open_tracking_substitution_tag")
                s.open_tracking_substitution_tag = text(value, path);
            else if (key == "track_clicks_html")
                s.track_clicks_html = boolean(value, path);
            else if (key == "track_clicks_plain")
                s.track_clicks_plain = boolean(value, path);
            else if (key == "subscription_tracking") {
                SubscriptionTracking t;
                for (const auto& [k, item] : object(value, path).items()) {
                    const std::string p = path + "." + k;
                    if (k == "enable")
                        t.enable = boolean(item, p);
                    else if (k == "text")
                        t.text = text(item, p);
                    else if (k == "html")
                        t.html = text(item, p);
                    else if (k == "substitution_tag")
                        t.substitution_tag = text(item, p);
                    else
                        unknown(p);
                }
                s.subscription_tracking = std::move(t);
            } else if (key == "ganalytics") {
                GoogleAnalytics g;
                for (const auto& [k, item] : object(value, path).items()) {
                    const std::string p = path + "." + k;
                    if (k == "enable")
                        g.enable = boolean(item, p);
                    else if (k == "utm_source")
                        g.utm_source = text(item, p);
                    else if (k == "utm_medium")
                        g.utm_medium = text(item, p);
                    else if (k == "utm_term")
                        g.utm_term = text(item, p);
                    else if (k == "utm_content")
                        g.utm_content = text(item, p);
                    else if (k == "utm_campaign")
                        g.utm_campaign = text(item, p);
                    else
                        unknown(p);
                }
                s.ganalytics = std::move(g);
            } else
                unknown(path);
        }
        return s;
    }
};

}  // namespace detail

/// `message` as JSON text: every field, attachments as base64. The outcome is not kept (it
/// belongs to a send, not to the message).
/// @throws InvalidMessage naming a field that is not valid UTF-8 (JSON cannot carry it).
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
/// @throws InvalidMessage naming the field when `text` is not such JSON: not JSON, another
///         format version, a field of the wrong type or an unknown one.
inline EmailMessage deserialize_message(std::string_view text) {
    std::string problem;
    const nlohmann::json json = detail::parse_json_text(text, &problem);
    if (json.is_discarded()) throw InvalidMessage("message", problem);
    return detail::MessageReader().read(json);
}

SENDGRID_BACKEND_NAMESPACE_END
