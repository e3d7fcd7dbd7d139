#pragma once

/// @file
/// The payload's personalizations: the message's own, one per `to` address (make_private) or
/// one from to/cc/bcc; each with its recipients and the fields it takes from the message.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload/content.hpp"
#include "sendgrid_backend/payload/limits.hpp"
#include "sendgrid_backend/payload/options.hpp"
#include "sendgrid_backend/payload/recipients.hpp"
#include "sendgrid_backend/payload/settings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The recipients of one personalization, to then cc then bcc in one list (one allocation per
/// personalization), with where each list ends.
struct PersonalizationPeople {
    std::vector<AddressView> list;
    std::size_t to_end = 0;
    std::size_t cc_end = 0;
    std::size_t count = 0;  ///< as SendGrid counts them against max_recipients
};

/// Whether a personalization sets anything of its own besides its recipients.
inline bool has_own_envelope(const Personalization& p) {
    return !p.subject.empty() || !p.headers.empty() || !p.substitutions.empty() ||
           p.dynamic_template_data || !p.custom_args.empty() || p.send_at;
}

/// Writes the "personalizations" array of one message (the key is the caller's).
template <class Sink>
class PersonalizationsWriter {
  public:
    /// `headers`: the message's extra_headers, checked (collect_headers). `options` must outlive
    /// this object (its window and deduplicate_recipients are read).
    PersonalizationsWriter(const EmailMessage& message,
                           const std::map<std::string, std::string>& headers,
                           const PayloadOptions& options, Sink& sink)
        : message_(message),
          headers_(headers),
          deduplicate_(options.deduplicate_recipients),
          sink_(sink) {
        const std::size_t all =
            message.personalizations.empty() ? message.to.size() : message.personalizations.size();
        first_ = std::min(options.first_personalization, all);
        end_ = first_ + std::min(options.personalization_count, all - first_);
    }

    void write() {
        const auto& explicit_ones = message_.personalizations;
        if (!explicit_ones.empty() && end_ - first_ > limits::max_personalizations) {
            throw InvalidMessage("personalizations", "has " + std::to_string(end_ - first_) +
                                                         " entries; SendGrid allows at most 1000" +
                                                         split_hint);
        }
        sink_.begin_array();
        if (!explicit_ones.empty()) {
            write_explicit();
        } else if (message_.make_private) {
            write_private();
        } else {
            const Personalization from_message;  // every field comes from the message
            personalization(from_message, message_.to.data(), message_.to.size(), "");
        }
        sink_.end_array();
        if (recipients_ > limits::max_recipients) {
            throw InvalidMessage("to",
                                 "the message has " + std::to_string(recipients_) +
                                     " recipients in to, cc and bcc; SendGrid allows at "
                                     "most 1000 per request" +
                                     (message_.personalizations.empty() && !message_.make_private
                                          ? std::string()
                                          : std::string(split_hint)));
        }
    }

  private:
    /// The message's own personalizations; each needs a `to`.
    void write_explicit() {
        const auto& explicit_ones = message_.personalizations;
        for (std::size_t i = first_; i < end_; ++i) {
            const std::string prefix = indexed("personalizations", i) + ".";
            const Personalization& p = explicit_ones[i];
            if (p.to.empty()) {
                throw InvalidMessage(prefix + "to",
                                     "is empty; SendGrid requires at least one "
                                     "'to' in every personalization");
            }
            personalization(p, p.to.data(), p.to.size(), prefix);
        }
    }

    /// make_private: one personalization per `to` address, so no one sees the others.
    void write_private() {
        if (message_.to.empty()) throw InvalidMessage("to", "is empty; nobody to send to");
        const std::size_t to_count = end_ - first_;
        if (to_count > limits::max_personalizations) {
            throw InvalidMessage("to",
                                 "make_private gives one personalization per address; "
                                 "SendGrid allows at most 1000, got " +
                                     std::to_string(to_count) + split_hint);
        }
        const Personalization from_message;
        for (std::size_t i = first_; i < end_; ++i) {
            personalization(from_message, &message_.to[i], 1, "", i);
        }
    }

    /// One personalization to the `to_count` addresses at `to`; the other empty fields of `p`
    /// are filled from the message. `prefix` is "personalizations[i]." for explicit ones and ""
    /// for those built from the message. `to_index` numbers `to` in error paths.
    void personalization(const Personalization& p, const std::string* to, std::size_t to_count,
                         const std::string& prefix, std::size_t to_index = 0) {
        const PersonalizationPeople people = recipients_of(p, to, to_count, prefix, to_index);
        recipients_ += people.count;
        sink_.begin_object();
        if (has_own_envelope(p) || !message_.make_private) {
            envelope(p, prefix);
        } else {
            shared_envelope();
        }
        write_people(people);
        sink_.end_object();
    }

    /// The recipients of `p`, checked: its to (given as `to_count` addresses at `to`), then cc
    /// and bcc from `p` or else from the message.
    PersonalizationPeople recipients_of(const Personalization& p, const std::string* to,
                                        std::size_t to_count, const std::string& prefix,
                                        std::size_t to_index) const {
        const std::vector<std::string>& cc = p.cc.empty() ? message_.cc : p.cc;
        const std::vector<std::string>& bcc = p.bcc.empty() ? message_.bcc : p.bcc;
        const std::size_t expected = to_count + cc.size() + bcc.size();
        PersonalizationRecipients checker(deduplicate_, expected);
        PersonalizationPeople people;
        people.list.reserve(expected);
        // cc and bcc taken from the message are named as the message's. (Views of `prefix`
        // itself: `cond ? "" : prefix` would be a temporary copy, gone after the call.)
        using ListName = PersonalizationRecipients::ListName;
        const std::string_view own_prefix = prefix;
        checker.add(people.list, to, to_count, ListName{own_prefix, "to"}, false, to_index);
        people.to_end = people.list.size();
        checker.add(people.list, cc.data(), cc.size(),
                    ListName{p.cc.empty() ? std::string_view() : own_prefix, "cc"}, true);
        people.cc_end = people.list.size();
        checker.add(people.list, bcc.data(), bcc.size(),
                    ListName{p.bcc.empty() ? std::string_view() : own_prefix, "bcc"}, true);
        if (people.to_end == 0) {
            throw InvalidMessage(prefix + "to",
                                 "is empty; SendGrid requires at least one 'to' "
                                 "in every personalization");
        }
        people.count = checker.count();
        return people;
    }

    /// "to", and "cc" and "bcc" when they hold anyone.
    void write_people(const PersonalizationPeople& people) {
        const AddressView* const at = people.list.data();
        sink_.key("to");
        write_addresses(sink_, at, at + people.to_end);
        if (people.cc_end > people.to_end) {
            sink_.key("cc");
            write_addresses(sink_, at + people.to_end, at + people.cc_end);
        }
        if (people.list.size() > people.cc_end) {
            sink_.key("bcc");
            write_addresses(sink_, at + people.cc_end, at + people.list.size());
        }
    }

    /// make_private writes up to 1000 personalizations from the message: they share one
    /// envelope, checked and written once, then repeated.
    void shared_envelope() {
        if (!message_envelope_) {
            message_envelope_ = sink_.capture_members([this] { envelope(Personalization{}, ""); });
        }
        sink_.replay_members(*message_envelope_);
    }

    /// Everything of a personalization but its recipients, as members of the open object:
    /// subject, headers, substitutions, dynamic_template_data, custom_args and send_at, each
    /// from `p` or else from the message.
    void envelope(const Personalization& p, const std::string& prefix) {
        subject(p, prefix);
        headers(p, prefix);
        string_map("substitutions", p.substitutions, message_.substitutions, prefix);
        template_data(p, prefix);
        string_map("custom_args", p.custom_args, message_.custom_args, prefix);
        send_at(p, prefix);
    }

    void subject(const Personalization& p, const std::string& prefix) {
        if (!p.subject.empty()) {
            require_single_line(p.subject, prefix + "subject");
            sink_.key("subject");
            sink_.string(p.subject);
        } else if (!message_.subject.empty()) {
            sink_.key("subject");
            sink_.string(message_.subject);
        }
    }

    /// The message's headers with the personalization's own set over them.
    void headers(const Personalization& p, const std::string& prefix) {
        if (!p.headers.empty()) {
            const std::string field = prefix + "headers";
            const std::map<std::string, std::string> merged =
                merge_headers(headers_, p.headers, field);
            sink_.key("headers");
            write_string_map(sink_, merged, field, false);
        } else if (!headers_.empty()) {
            sink_.key("headers");
            write_string_map(sink_, headers_, "headers", false);
        }
    }

    /// substitutions or custom_args: the personalization's `own`, or else the message's.
    template <std::size_t N>
    void string_map(const char (&key)[N], const std::map<std::string, std::string>& own,
                    const std::map<std::string, std::string>& message_args,
                    const std::string& prefix) {
        if (!own.empty()) {
            sink_.key(key);
            write_string_map(sink_, own, prefix + key, true);
        } else if (!message_args.empty()) {
            sink_.key(key);
            write_string_map(sink_, message_args, key, true);
        }
    }

    void template_data(const Personalization& p, const std::string& prefix) {
        const TemplateData& data =
            p.dynamic_template_data ? p.dynamic_template_data : message_.dynamic_template_data;
        if (!data) return;
        const std::string field =
            p.dynamic_template_data ? prefix + "dynamic_template_data" : "dynamic_template_data";
        write_checked_template_data(sink_, data, field);
    }

    void send_at(const Personalization& p, const std::string& prefix) {
        const std::optional<std::int64_t>& send_at = p.send_at ? p.send_at : message_.send_at;
        if (!send_at) return;
        if (*send_at < 0) {
            throw InvalidMessage(p.send_at ? prefix + "send_at" : "send_at",
                                 "must be a unix time, not negative");
        }
        sink_.key("send_at");
        sink_.integer(*send_at);
    }

    const EmailMessage& message_;
    const std::map<std::string, std::string>& headers_;
    bool deduplicate_;
    Sink& sink_;
    std::size_t recipients_ = 0;
    std::size_t first_ = 0;  ///< the personalizations (or make_private addresses) written
    std::size_t end_ = 0;

    static constexpr const char* split_hint =
        " (Settings::split_large_messages sends it as several requests)";
    std::optional<typename Sink::Members> message_envelope_;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
