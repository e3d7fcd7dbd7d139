#pragma once

/// @file
/// What a payload says: the subject or template_id, the content parts (the body and its
/// alternatives, in SendGrid's order) and dynamic_template_data.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/detail/json/sinks.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/template_data.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// ---- subject, template ----

/// "template_id" when the message has one (the template brings its subject and content),
/// else "subject" unless it is empty.
template <class Sink>
void write_template_or_subject(Sink& sink, const EmailMessage& message) {
    require_single_line(message.subject, "subject");
    require_utf8(message.template_id, "template_id");
    if (!message.template_id.empty()) {
        sink.key("template_id");
        sink.string(message.template_id);
    } else if (!message.subject.empty()) {
        sink.key("subject");
        sink.string(message.subject);
    }
}

/// dynamic_template_data as JSON text: nlohmann dumps it (the sink takes text, not a value).
inline void write_template_data(JsonTextSink& sink, const TemplateData& data,
                                const std::string& field) {
    sink.json_text(TemplateDataAccess::dump(data, field));
}

/// dynamic_template_data as a copy of the value, in the tree.
template <class Json>
void write_template_data(BasicJsonDomSink<Json>& sink, const TemplateData& data,
                         const std::string&) {
    sink.json_value(*data);
}

/// "dynamic_template_data": `data` (which holds a value), checked; errors name `field`.
template <class Sink>
void write_checked_template_data(Sink& sink, const TemplateData& data, const std::string& field) {
    TemplateDataAccess::check(data, field);
    sink.key("dynamic_template_data");
    write_template_data(sink, data, field);
}

// ---- content ----

/// One content part: the body, or alternatives[alternative].
struct ContentPart {
    std::string type;
    const std::string* value;
    std::size_t alternative;  ///< npos for the body
};

/// text/plain first, then AMP, then text/html, then any other type (SendGrid's order).
inline int content_rank(std::string_view mimetype) {
    if (iequals(mimetype, "text/plain")) return 0;
    if (iequals(mimetype, "text/x-amp-html")) return 1;
    if (iequals(mimetype, "text/html")) return 2;
    return 3;
}

/// " ": what the original sends for an empty body or a missing plain part (SendGrid refuses
/// empty values).
inline const std::string& blank_content() {
    static const std::string text = " ";
    return text;
}

/// The body as "text/<content_subtype>", checked; an empty body is " " when alternatives
/// carry the content.
inline ContentPart body_part(const EmailMessage& message) {
    require_single_line(message.content_subtype, "content_subtype");
    if (message.content_subtype.empty()) {
        throw InvalidMessage("content_subtype", "is empty; use \"plain\" or \"html\"");
    }
    require_mail_text(message.body, "body");
    if (message.body.empty() && message.alternatives.empty()) {
        throw InvalidMessage("body",
                             "is empty and there is no alternative or template_id; "
                             "SendGrid needs some content");
    }
    const std::string& body = message.body.empty() ? blank_content() : message.body;
    return ContentPart{"text/" + message.content_subtype, &body, std::string::npos};
}

/// alternatives[index], checked: a type and some content.
inline ContentPart alternative_part(const Alternative& alternative, std::size_t index) {
    const std::string field = indexed("alternatives", index);
    require_single_line(alternative.mimetype, field + ".mimetype");
    if (alternative.mimetype.empty()) throw InvalidMessage(field + ".mimetype", "is empty");
    require_mail_text(alternative.content, field + ".content");
    if (alternative.content.empty()) {
        throw InvalidMessage(field + ".content", "is empty; SendGrid refuses empty content");
    }
    return ContentPart{alternative.mimetype, &alternative.content, index};
}

/// Sorts `parts` by content_rank, keeping the order of equal ranks. One insertion at a time: a
/// handful of parts, no buffer to allocate as std::stable_sort does.
inline void order_content_parts(std::vector<ContentPart>& parts) {
    for (std::size_t i = 1; i < parts.size(); ++i) {
        for (std::size_t k = i;
             k > 0 && content_rank(parts[k - 1].type) > content_rank(parts[k].type); --k) {
            std::swap(parts[k - 1], parts[k]);
        }
    }
}

/// Each type may appear once (any case); the error names the later part.
inline void refuse_repeated_types(const std::vector<ContentPart>& parts) {
    for (std::size_t i = 1; i < parts.size(); ++i) {
        for (std::size_t k = 0; k < i; ++k) {
            if (iequals(parts[i].type, parts[k].type)) {
                const std::size_t alternative = parts[i].alternative;
                throw InvalidMessage(
                    alternative == std::string::npos ? "body"
                                                     : indexed("alternatives", alternative),
                    "a second " + parts[i].type + " part; each type may appear once");
            }
        }
    }
}

/// The body and the alternatives, checked and in SendGrid's order.
inline std::vector<ContentPart> content_parts(ContentPart body,
                                              const std::vector<Alternative>& alternatives) {
    std::vector<ContentPart> parts;
    parts.reserve(1 + alternatives.size());
    parts.push_back(std::move(body));
    for (std::size_t i = 0; i < alternatives.size(); ++i) {
        parts.push_back(alternative_part(alternatives[i], i));
    }
    order_content_parts(parts);
    refuse_repeated_types(parts);
    return parts;
}

template <class Sink>
void write_content_part(Sink& sink, std::string_view type, const std::string& value) {
    sink.begin_object();
    sink.key("type");
    sink.string(type);
    sink.key("value");
    sink.string(value);
    sink.end_object();
}

/// The parts in [first, last), ordered, as the content array. Returns the bytes of their
/// values (for the size estimate of the request).
template <class Sink>
std::size_t write_content_parts(Sink& sink, const ContentPart* first, const ContentPart* last) {
    std::size_t bytes = 0;
    sink.key("content");
    sink.begin_array();
    // As in the original, a message without a plain part (an html body) gets " " as plain.
    if (content_rank(first->type) != 0) write_content_part(sink, "text/plain", blank_content());
    for (; first != last; ++first) {
        bytes += first->value->size();
        write_content_part(sink, first->type, *first->value);
    }
    sink.end_array();
    return bytes;
}

/// "content" of a message without a template. Returns the bytes of the values written.
template <class Sink>
std::size_t write_content(Sink& sink, const EmailMessage& message) {
    ContentPart body = body_part(message);
    if (message.alternatives.empty()) {  // most messages: nothing to order or compare
        return write_content_parts(sink, &body, &body + 1);
    }
    const std::vector<ContentPart> parts = content_parts(std::move(body), message.alternatives);
    return write_content_parts(sink, parts.data(), parts.data() + parts.size());
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
