#pragma once

/// @file
/// `build_payload`: an `EmailMessage` validated and mapped to the JSON body of
/// `POST /v3/mail/send`; `serialize_payload`: the same as the JSON text that goes on the wire,
/// written without building a tree. Pure: no I/O, no clock, no randomness; the same message and
/// options always give the same JSON. Both run the one mapping (`write_payload`, composed of the
/// sections in payload/), so they cannot disagree; `SendgridBackend` calls them with its
/// settings.

#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/sinks.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload/attachments.hpp"
#include "sendgrid_backend/payload/content.hpp"
#include "sendgrid_backend/payload/limits.hpp"
#include "sendgrid_backend/payload/options.hpp"
#include "sendgrid_backend/payload/personalizations.hpp"
#include "sendgrid_backend/payload/recipients.hpp"
#include "sendgrid_backend/payload/settings.hpp"
#include "sendgrid_backend/template_data.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

/// from_email, which every message needs.
inline AddressView checked_sender(const EmailMessage& message) {
    if (trim(message.from_email).empty()) {
        throw InvalidMessage("from_email", "is empty; every message needs a sender");
    }
    return parse_address_view(message.from_email, "from_email");
}

/// `estimated_bytes` (content and base64 attachments: a floor of the request's size) within
/// SendGrid's limit on the whole request.
inline void check_payload_size(std::size_t estimated_bytes, const EmailMessage& message) {
    if (estimated_bytes > limits::max_payload_bytes) {
        throw InvalidMessage(message.attachments.empty() ? "body" : "attachments",
                             "the request would be at least " + std::to_string(estimated_bytes) +
                                 " bytes; SendGrid accepts at most 30 MB");
    }
}

/// Validates one message and writes its payload into a sink (JsonTextSink or BasicJsonDomSink):
/// the one mapping of django-sendgrid-v5's `_build_sg_mail`, rule by rule, section by section.
/// The sections are checked in the order they are written, so the first offending field in
/// that order is the one an error names.
template <class Sink>
void write_payload(Sink& sink, const EmailMessage& message, const PayloadOptions& options) {
    sink.begin_object();
    sink.key("from");
    write_address(sink, checked_sender(message));
    write_template_or_subject(sink, message);
    write_reply_to(sink, message);
    const std::map<std::string, std::string> headers = collect_headers(message.extra_headers);
    sink.key("personalizations");
    PersonalizationsWriter<Sink>(message, headers, options, sink).write();
    std::size_t estimated_bytes = 0;
    if (message.template_id.empty()) estimated_bytes += write_content(sink, message);
    if (!message.attachments.empty())
        estimated_bytes += write_attachments(sink, message.attachments);
    if (!message.categories.empty()) write_categories(sink, message.categories);
    if (message.unsubscribe_group) write_unsubscribe_group(sink, *message.unsubscribe_group);
    if (message.ip_pool_name) write_ip_pool_name(sink, *message.ip_pool_name);
    if (!message.batch_id.empty()) write_batch_id(sink, message.batch_id);
    write_mail_settings(sink, message.mail_settings, options.sandbox_mode);
    write_tracking_settings(sink, message.tracking_settings,
                            TrackingDefaults{options.track_email_opens, options.track_clicks_html,
                                             options.track_clicks_plain});
    sink.end_object();
    check_payload_size(estimated_bytes, message);
}

}  // namespace detail

/// Validates `message` and maps it to the JSON body of `POST /v3/mail/send`, rule by rule as
/// django-sendgrid-v5's `_build_sg_mail` (docs/sending.md, "Payload mapping", lists every rule).
/// Pure and thread-safe: it reads the message and the options only. Returns an nlohmann::json:
/// include <nlohmann/json.hpp> to call it. (A template so that this header needs only
/// nlohmann/json_fwd.hpp and programs that never call it do not compile the tree-building
/// code; call it as a function.)
/// @throws InvalidMessage naming the first offending field, before anything is sent.
template <class Json = nlohmann::json>
Json build_payload(const EmailMessage& message, const PayloadOptions& options = {}) {
    static_assert(detail::is_complete<Json>::value,
                  "build_payload returns an nlohmann::json: include <nlohmann/json.hpp>");
    detail::BasicJsonDomSink<Json> sink;
    detail::write_payload(sink, message, options);
    return std::move(sink.root);
}

/// The same payload as JSON text, exactly as it goes on the wire: written straight into the
/// string, with no tree in between (the send path's form; keys in writing order).
/// @throws InvalidMessage naming the first offending field.
SENDGRID_BACKEND_COMPILED std::string serialize_payload(const EmailMessage& message,
                                                        const PayloadOptions& options = {});

#if SENDGRID_BACKEND_DEFINE_COMPILED
SENDGRID_BACKEND_COMPILED std::string serialize_payload(const EmailMessage& message,
                                                        const PayloadOptions& options) {
    detail::JsonTextSink sink;
    sink.reserve(1024);
    detail::write_payload(sink, message, options);
    return sink.take();
}
#endif

SENDGRID_BACKEND_NAMESPACE_END
