#pragma once

/// @file
/// The payload's attachments: each checked, named and typed (guessed when not given), then
/// written with its content in base64.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/detail/text/mime_types.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// What an attachment is sent as, besides its content.
struct SentAttachment {
    std::string type;
    std::string filename;
    std::string_view content_id;  ///< without <>; empty for an ordinary attachment
};

/// The Content-ID of an inline part as SendGrid wants it: without the angle brackets, which
/// SendGrid adds itself.
inline std::string_view bare_content_id(std::string_view id) noexcept {
    if (id.size() >= 2 && id.front() == '<' && id.back() == '>') id = id.substr(1, id.size() - 2);
    return id;
}

/// Refuses attachments[index] as SendGrid would.
inline void refuse_bad_attachment(const Attachment& attachment, std::size_t index) {
    const std::string field = indexed("attachments", index);
    if (attachment.content.empty()) {
        throw InvalidMessage(field + ".content", "is empty; SendGrid refuses empty files");
    }
    require_single_line(attachment.filename, field + ".filename");
    require_single_line(attachment.mimetype, field + ".mimetype");
    require_single_line(attachment.content_id, field + ".content_id");
    if (!attachment.content_id.empty() && bare_content_id(attachment.content_id).empty()) {
        throw InvalidMessage(field + ".content_id", "is empty inside <>");
    }
}

/// What attachments[index], already through refuse_bad_attachment, is sent as. Without a type,
/// one is guessed from the file name; without a file name, one is made from the content (the
/// same content always gets the same name).
inline SentAttachment sent_attachment(const Attachment& attachment, std::size_t index) {
    std::string type = attachment.mimetype.empty()
                           ? std::string(guess_mimetype(attachment.filename))
                           : attachment.mimetype;
    std::string filename =
        attachment.filename.empty()
            ? "part-" + content_hex_id(attachment.content, index) + guess_extension(type)
            : attachment.filename;
    return SentAttachment{std::move(type), std::move(filename),
                          bare_content_id(attachment.content_id)};
}

template <class Sink>
void write_attachment(Sink& sink, const Attachment& attachment, const SentAttachment& sent) {
    sink.begin_object();
    sink.key("content");
    sink.base64_string(attachment.content);
    sink.key("filename");
    sink.string(sent.filename);
    sink.key("type");
    sink.string(sent.type);
    if (!sent.content_id.empty()) {
        sink.key("content_id");
        sink.string(sent.content_id);
        sink.key("disposition");
        sink.string("inline");
    }
    sink.end_object();
}

/// "attachments", every one checked before the first is encoded. Returns the bytes of their
/// base64 (for the size estimate of the request).
template <class Sink>
std::size_t write_attachments(Sink& sink, const std::vector<Attachment>& attachments) {
    // Refused in a first pass, named and typed in the second (no list of names and types in
    // between: its code would be compiled into every sending file).
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < attachments.size(); ++i) {
        refuse_bad_attachment(attachments[i], i);
        bytes += base64_encoded_size(attachments[i].content.size());
    }
    sink.key("attachments");
    sink.begin_array();
    for (std::size_t i = 0; i < attachments.size(); ++i) {
        write_attachment(sink, attachments[i], sent_attachment(attachments[i], i));
    }
    sink.end_array();
    return bytes;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
