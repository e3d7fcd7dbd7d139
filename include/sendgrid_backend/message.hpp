#pragma once

/// @file
/// `EmailMessage`: Django's `EmailMessage`/`EmailMultiAlternatives` fields plus the SendGrid
/// extras that django-sendgrid-v5 reads as optional attributes, typed.
///
/// @code
/// sendgrid_backend::EmailMessage message("Welcome", "Hello!", "Shop <shop@example.com>",
///                                         {"jane@example.com"});
/// message.attach_alternative("<p>Hello!</p>", "text/html");
/// message.attach("terms.pdf", pdf_bytes);  // mimetype guessed from the name
/// message.categories = {"welcome"};
/// @endcode

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/template_data.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// A file sent with the message. Non-empty `content_id` makes it an inline part (referenced
/// from HTML as `cid:<content_id>`), sent with `disposition: inline`.
struct Attachment {
    std::string filename;    ///< empty: a `part-<hex>.<ext>` name is generated
    std::string content;     ///< raw bytes; base64-encoded into the payload
    std::string mimetype;    ///< empty: guessed from the filename
    std::string content_id;  ///< with or without the surrounding `<>`
};

/// Another rendering of the body, e.g. `("<p>Hi</p>", "text/html")` (Django's alternatives).
struct Alternative {
    std::string content;
    std::string mimetype;
};

/// One SendGrid personalization (an envelope). Empty fields are filled from the message.
struct Personalization {
    std::vector<std::string> to;  ///< required
    std::vector<std::string> cc;
    std::vector<std::string> bcc;
    std::string subject;
    std::map<std::string, std::string> headers;  ///< merged over the message's extra_headers
    std::map<std::string, std::string> substitutions;
    TemplateData dynamic_template_data;  ///< a JSON object (an nlohmann::json)
    std::map<std::string, std::string> custom_args;
    std::optional<std::int64_t> send_at;  ///< unix time
};

/// SendGrid's `asm` (a C++ keyword, hence the name): the unsubscribe group of the message.
struct UnsubscribeGroup {
    std::optional<std::int64_t> group_id;         ///< required by SendGrid when the group is set
    std::vector<std::int64_t> groups_to_display;  ///< at most 25
};

/// Footer added by SendGrid (`mail_settings.footer`).
struct Footer {
    bool enable = true;
    std::string text;
    std::string html;
};

/// Per-message `mail_settings` overrides; unset fields are not sent. `sandbox_mode` always comes
/// from the backend's settings, so a message cannot leave a sandboxed backend.
struct MailSettings {
    std::optional<bool> bypass_list_management;
    std::optional<bool> bypass_spam_management;
    std::optional<bool> bypass_bounce_management;
    std::optional<bool> bypass_unsubscribe_management;
    std::optional<Footer> footer;
};

/// `tracking_settings.subscription_tracking`.
struct SubscriptionTracking {
    bool enable = true;
    std::string text;
    std::string html;
    std::string substitution_tag;
};

/// `tracking_settings.ganalytics`.
struct GoogleAnalytics {
    bool enable = true;
    std::string utm_source;
    std::string utm_medium;
    std::string utm_term;
    std::string utm_content;
    std::string utm_campaign;
};

/// Per-message `tracking_settings` overrides. Open and click tracking default to the backend's
/// settings (`track_email_opens`, `track_clicks_html`, `track_clicks_plain`).
struct TrackingSettings {
    std::optional<bool> track_email_opens;
    std::string open_tracking_substitution_tag;
    std::optional<bool> track_clicks_html;
    std::optional<bool> track_clicks_plain;
    std::optional<SubscriptionTracking> subscription_tracking;
    std::optional<GoogleAnalytics> ganalytics;
};

/// An email, with Django's field names. Copyable and movable; not synchronized (one thread
/// at a time, as with any value type).
class EmailMessage {
  public:
    // A field added here, or to one of the structs above, goes into its table in
    // message_fields.hpp too: the stored JSON and the echo are written from that table, and
    // tests/test_message_fields.cpp fills and checks every entry of it. The payload maps fields
    // by hand (SendGrid's shape is not ours): add it there, or to that test's list of fields
    // the payload does not carry.

    // --- Django's fields ---
    std::string subject;
    std::string body;
    std::string from_email;
    std::vector<std::string> to;
    std::vector<std::string> cc;
    std::vector<std::string> bcc;
    /// At most one address: SendGrid has one reply-to (use `reply_to_list` for several).
    std::vector<std::string> reply_to;
    /// Sent as headers of every personalization; a `Reply-To` entry becomes the reply-to.
    std::map<std::string, std::string> extra_headers;
    std::vector<Attachment> attachments;
    std::vector<Alternative> alternatives;
    /// The body's MIME subtype: "plain" or "html" (Django's `content_subtype`).
    std::string content_subtype = "plain";

    // --- SendGrid extras (django-sendgrid-v5's optional attributes) ---
    std::string template_id;  ///< empty: none; with one, no top-level subject or content is sent
    TemplateData dynamic_template_data;  ///< a JSON object (an nlohmann::json)
    std::map<std::string, std::string> substitutions;
    std::vector<Personalization> personalizations;  ///< empty: built from to/cc/bcc
    bool make_private = false;                      ///< one personalization per `to` address
    std::vector<std::string> categories;
    std::map<std::string, std::string> custom_args;
    std::optional<UnsubscribeGroup> unsubscribe_group;  ///< SendGrid's `asm`
    std::optional<std::string> ip_pool_name;
    std::optional<std::int64_t> send_at;
    /// Empty: none. A batch id from `ScheduledSends::create_batch_id()`, so that a message sent
    /// with send_at can be paused or cancelled with the others of its batch.
    std::string batch_id;
    std::vector<std::string> reply_to_list;
    MailSettings mail_settings;
    TrackingSettings tracking_settings;

    // --- Recorded by the backend after each send (beyond the original) ---
    SendOutcome outcome;

    EmailMessage() = default;
    EmailMessage(std::string subject_, std::string body_, std::string from_email_,
                 std::vector<std::string> to_, std::vector<std::string> cc_ = {},
                 std::vector<std::string> bcc_ = {})
        : subject(std::move(subject_)),
          body(std::move(body_)),
          from_email(std::move(from_email_)),
          to(std::move(to_)),
          cc(std::move(cc_)),
          bcc(std::move(bcc_)) {}

    /// Attaches a file; an empty `mimetype` is guessed from the filename when the payload is built.
    EmailMessage& attach(std::string filename, std::string content, std::string mimetype = "") {
        attachments.push_back(Attachment{std::move(filename), std::move(content),
                                         std::move(mimetype), std::string()});
        return *this;
    }

    /// Attaches an inline part that HTML refers to as `cid:<content_id>`.
    EmailMessage& attach_inline(std::string content_id, std::string filename, std::string content,
                                std::string mimetype = "") {
        attachments.push_back(Attachment{std::move(filename), std::move(content),
                                         std::move(mimetype), std::move(content_id)});
        return *this;
    }

    /// Adds another rendering of the body, e.g. ("<p>Hi</p>", "text/html").
    EmailMessage& attach_alternative(std::string content, std::string mimetype) {
        alternatives.push_back(Alternative{std::move(content), std::move(mimetype)});
        return *this;
    }

    /// Every non-empty address of to, cc and bcc, in that order (Django's `recipients()`).
    /// With explicit personalizations, their addresses instead.
    std::vector<std::string> recipients() const {
        std::vector<std::string> all;
        auto add = [&all](const std::vector<std::string>& addresses) {
            for (const auto& address : addresses) {
                if (!address.empty()) all.push_back(address);
            }
        };
        if (personalizations.empty()) {
            add(to);
            add(cc);
            add(bcc);
        } else {
            for (const auto& personalization : personalizations) {
                add(personalization.to);
                add(personalization.cc.empty() ? cc : personalization.cc);
                add(personalization.bcc.empty() ? bcc : personalization.bcc);
            }
        }
        return all;
    }
};

SENDGRID_BACKEND_NAMESPACE_END
