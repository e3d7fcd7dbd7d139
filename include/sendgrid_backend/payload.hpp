#pragma once

/// @file
/// `build_payload`: an `EmailMessage` validated and mapped to the JSON body of
/// `POST /v3/mail/send`; `serialize_payload`: the same as the JSON text that goes on the wire,
/// written without building a tree. Pure: no I/O, no clock, no randomness; the same message and
/// options always give the same JSON. Both run the one mapping (`PayloadWriter`), so they cannot
/// disagree; `SendgridBackend` calls them with its settings.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/detail/json/sinks.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/detail/text/mime_types.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// SendGrid's documented limits, checked before anything is sent.
namespace limits {
inline constexpr std::size_t max_personalizations = 1000;
inline constexpr std::size_t max_recipients = 1000;  ///< to + cc + bcc over all personalizations
inline constexpr std::size_t max_categories = 10;
inline constexpr std::size_t max_category_length = 255;
inline constexpr std::size_t max_args_bytes = 10000;  ///< custom_args or substitutions, each
inline constexpr std::size_t max_groups_to_display = 25;
inline constexpr std::size_t min_ip_pool_name = 2;
inline constexpr std::size_t max_ip_pool_name = 64;
/// The whole request. 30 MB taken as 30,000,000 bytes, the stricter reading.
inline constexpr std::size_t max_payload_bytes = 30'000'000;
}  // namespace limits

/// The settings that shape a payload (a subset of `SendgridBackend::Settings`).
struct PayloadOptions {
    bool sandbox_mode = false;
    bool track_email_opens = true;
    bool track_clicks_html = true;
    bool track_clicks_plain = true;
    /// Drop an address that already appears in the same personalization (to before cc before
    /// bcc) instead of refusing the message. Off by default: a duplicate is often a bug.
    bool deduplicate_recipients = false;
};

namespace detail {

/// Headers SendGrid does not let a message set (case-insensitive).
inline constexpr std::string_view reserved_headers[] = {"x-sg-id",      "x-sg-eid",
                                                        "received",     "dkim-signature",
                                                        "content-type", "content-transfer-encoding",
                                                        "to",           "from",
                                                        "subject",      "reply-to",
                                                        "cc",           "bcc"};

/// The size of `{"k":"v",...}` as sent (escapes not counted).
inline std::size_t serialized_args_size(const std::map<std::string, std::string>& args) {
    std::size_t size = 2;
    for (const auto& [key, value] : args) size += key.size() + value.size() + 6;
    return args.empty() ? size : size - 1;
}

/// Writes string key/value pairs (custom_args, substitutions, headers) as an object, each
/// checked for UTF-8; `limit` bytes at most (0: no limit).
template <class Sink>
void write_string_map(Sink& sink, const std::map<std::string, std::string>& args,
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
    sink.begin_object();
    for (const auto& [key, value] : args) {
        sink.key(key);
        sink.string(value);
    }
    sink.end_object();
}

template <class Sink>
void write_address(Sink& sink, const AddressView& address) {
    sink.begin_object();
    sink.key("email");
    sink.string(address.email);
    const std::string_view name = address.name();
    if (!name.empty()) {
        sink.key("name");
        sink.string(name);
    }
    sink.end_object();
}

/// {"enable": value}, the shape of every SendGrid on/off setting (left open for more keys).
template <class Sink>
void begin_enable(Sink& sink, bool value) {
    sink.begin_object();
    sink.key("enable");
    sink.boolean(value);
}

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

/// Case-insensitive (ASCII) hashing and equality for addresses.
struct AddressKeyHash {
    // FNV-1a
    SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE std::size_t operator()(
        std::string_view text) const noexcept {
        std::size_t hash = 1469598103934665603ULL;
        for (char c : text)
            hash = (hash ^ static_cast<unsigned char>(to_lower_ascii(c))) * 1099511628211ULL;
        return hash;
    }
};
struct AddressKeyEqual {
    bool operator()(std::string_view a, std::string_view b) const noexcept { return iequals(a, b); }
};

/// The recipients of one personalization, checked and de-duplicated as SendGrid wants them.
class PersonalizationRecipients {
  public:
    /// A recipient list's field, e.g. "personalizations[2]." + "cc", held as two views (both
    /// outlive the object): the whole name is only spelled out for an error.
    struct ListName {
        std::string_view prefix;
        std::string_view name;  ///< "to", "cc" or "bcc"

        std::string str() const { return std::string(prefix) + std::string(name); }
        bool operator==(const ListName& other) const noexcept {
            return prefix == other.prefix && name == other.name;
        }
    };

    /// `expected`: how many addresses the personalization may hold in all. With one there is
    /// nothing to compare (make_private's common case: no bookkeeping at all).
    PersonalizationRecipients(bool deduplicate, std::size_t expected)
        : deduplicate_(deduplicate), single_(expected <= 1) {
        if (!single_ && expected <= small_limit) small_.reserve(expected);
    }

    /// Parses `count` addresses starting at `addresses` onto the end of `list` (the views
    /// point into `addresses`, not into `list`). `skip_blank`: Django lets cc/bcc hold empty
    /// strings; they are skipped, not refused. `first_index` numbers the addresses in error
    /// paths (make_private passes one at a time).
    void add(std::vector<AddressView>& list, const std::string* addresses, std::size_t count,
             ListName field, bool skip_blank, std::size_t first_index = 0) {
        const std::size_t size_before = list.size();
        std::uint8_t field_index = 0;
        for (std::size_t i = 0; i < count; ++i) {
            // The error path ("to[3]") is only spelled out when there is an error to report.
            auto path = [&] { return indexed(field.str(), first_index + i); };
            if (skip_blank && trim(addresses[i]).empty()) continue;
            AddressView address = parse(addresses[i], field, first_index + i);
            if (!single_) {
                if (const std::uint8_t* first = find(address.email)) {
                    // Within cc and within bcc, the original drops repeats silently; elsewhere it
                    // is a mistake worth reporting unless the caller asked for de-duplication.
                    const ListName& first_field = fields_[*first];
                    if (deduplicate_ || (first_field == field && field.name != "to")) continue;
                    throw InvalidMessage(path(), quote_for_error(address.email) +
                                                     " is already in " + first_field.str() +
                                                     "; SendGrid refuses an address twice in one "
                                                     "personalization (set deduplicate_recipients "
                                                     "to drop repeats)");
                }
                if (list.size() == size_before) field_index = add_field(field);
            }
            list.push_back(std::move(address));
            if (!single_) remember(list.back().email, field_index);
        }
        count_ += list.size() - size_before;
    }

    std::size_t count() const noexcept { return count_; }

  private:
    static constexpr std::size_t small_limit = 32;

    /// One recipient address; errors name `field[index]`. A display name may hold ';' or ','
    /// and is sent as written: SendGrid once dropped such recipients, and clients wrapped the
    /// name in quotes; it has since fixed that, and the quotes would now show.
    static AddressView parse(const std::string& text, const ListName& field, std::size_t index) {
        try {
            return parse_address_view(text, field.name);
        } catch (const InvalidMessage& invalid) {
            throw InvalidMessage(indexed(field.str(), index), invalid.reason());
        }
    }

    std::uint8_t add_field(const ListName& field) {
        fields_[field_count_] = field;
        return static_cast<std::uint8_t>(field_count_++);
    }

    /// The fields_ index of the list that already holds `email`, or null.
    const std::uint8_t* find(std::string_view email) const {
        if (!by_key_.empty()) {
            auto found = by_key_.find(email);
            return found == by_key_.end() ? nullptr : &found->second;
        }
        for (const auto& [seen, field] : small_) {
            if (iequals(seen, email)) return &field;
        }
        return nullptr;
    }

    void remember(std::string_view email, std::uint8_t field_index) {
        // Most personalizations hold a handful of addresses: a vector beats a hash set there.
        if (by_key_.empty() && small_.size() < small_limit) {
            small_.emplace_back(email, field_index);
            return;
        }
        if (by_key_.empty()) {
            by_key_.insert(small_.begin(), small_.end());
            small_.clear();
        }
        by_key_.emplace(email, field_index);
    }

    bool deduplicate_;
    bool single_;
    std::array<ListName, 3> fields_;  // the lists added so far: to, cc, bcc
    std::size_t field_count_ = 0;
    std::vector<std::pair<std::string_view, std::uint8_t>> small_;  // email -> fields_ index
    std::unordered_map<std::string_view, std::uint8_t, AddressKeyHash, AddressKeyEqual> by_key_;
    std::size_t count_ = 0;
};

/// Validates one message and writes its payload into a sink (JsonTextSink or BasicJsonDomSink): the
/// one mapping of django-sendgrid-v5's `_build_sg_mail`, rule by rule. One object per message.
template <class Sink>
class PayloadWriter {
  public:
    PayloadWriter(const EmailMessage& message, const PayloadOptions& options, Sink& sink)
        : message_(message), options_(options), sink_(sink) {}

    void write() {
        sink_.begin_object();
        sink_.key("from");
        write_address(sink_, parse_address_view(required_from(), "from_email"));

        require_single_line(message_.subject, "subject");
        require_utf8(message_.template_id, "template_id");
        const bool has_template = !message_.template_id.empty();
        if (has_template) {
            sink_.key("template_id");
            sink_.string(message_.template_id);
        } else if (!message_.subject.empty()) {
            sink_.key("subject");
            sink_.string(message_.subject);
        }

        reply_to();
        collect_headers();
        sink_.key("personalizations");
        personalizations();
        if (!has_template) content();
        if (!message_.attachments.empty()) attachments();
        if (!message_.categories.empty()) categories();
        if (message_.unsubscribe_group) unsubscribe_group();
        if (message_.ip_pool_name) ip_pool_name();
        mail_settings();
        tracking_settings();
        sink_.end_object();

        if (estimated_bytes_ > limits::max_payload_bytes) {
            throw InvalidMessage(message_.attachments.empty() ? "body" : "attachments",
                                 "the request would be at least " +
                                     std::to_string(estimated_bytes_) +
                                     " bytes; SendGrid accepts at most 30 MB");
        }
    }

  private:
    const std::string& required_from() const {
        if (trim(message_.from_email).empty()) {
            throw InvalidMessage("from_email", "is empty; every message needs a sender");
        }
        return message_.from_email;
    }

    void reply_to() {
        std::optional<AddressView> reply_to;
        for (const auto& [name, value] : message_.extra_headers) {
            if (iequals(name, "reply-to"))
                reply_to = parse_address_view(value, keyed("extra_headers", name));
        }
        if (message_.reply_to.size() > 1) {
            throw InvalidMessage("reply_to",
                                 "SendGrid allows one reply-to address; use "
                                 "reply_to_list for several");
        }
        if (message_.reply_to.size() == 1) {
            AddressView from_field = parse_address_view(message_.reply_to[0], "reply_to[0]");
            if (reply_to && *reply_to != from_field) {
                throw InvalidMessage("reply_to",
                                     "differs from the Reply-To header; SendGrid "
                                     "allows one reply-to address");
            }
            reply_to = std::move(from_field);
        }
        if (!message_.reply_to_list.empty()) {
            if (reply_to) {
                throw InvalidMessage("reply_to_list",
                                     "cannot be used together with reply_to "
                                     "or a Reply-To header");
            }
            std::vector<AddressView> list;
            std::set<std::string> seen;
            for (std::size_t i = 0; i < message_.reply_to_list.size(); ++i) {
                const std::string path = indexed("reply_to_list", i);
                AddressView address = parse_address_view(message_.reply_to_list[i], path);
                if (!seen.insert(to_lower_ascii(address.email)).second) {
                    throw InvalidMessage(path, quote_for_error(address.email) + " is listed twice");
                }
                list.push_back(std::move(address));
            }
            sink_.key("reply_to_list");
            write_addresses(list.data(), list.data() + list.size());
        }
        if (reply_to) {
            sink_.key("reply_to");
            write_address(sink_, *reply_to);
        }
    }

    /// The addresses in [first, last) as an array.
    void write_addresses(const AddressView* first, const AddressView* last) {
        sink_.begin_array();
        for (; first != last; ++first) write_address(sink_, *first);
        sink_.end_array();
    }

    void collect_headers() {
        for (const auto& [name, value] : message_.extra_headers) {
            if (iequals(name, "reply-to")) continue;  // became reply_to
            check_header(name, value, "extra_headers");
            headers_[name] = value;
        }
    }

    void personalizations() {
        std::size_t recipients = 0;
        const auto& explicit_ones = message_.personalizations;
        if (explicit_ones.size() > limits::max_personalizations) {
            throw InvalidMessage("personalizations", "has " + std::to_string(explicit_ones.size()) +
                                                         " entries; SendGrid allows at most 1000");
        }
        sink_.begin_array();
        if (!explicit_ones.empty()) {
            for (std::size_t i = 0; i < explicit_ones.size(); ++i) {
                const std::string prefix = indexed("personalizations", i) + ".";
                const Personalization& p = explicit_ones[i];
                if (p.to.empty()) {
                    throw InvalidMessage(prefix + "to",
                                         "is empty; SendGrid requires at least one "
                                         "'to' in every personalization");
                }
                personalization(p, p.to.data(), p.to.size(), prefix, recipients);
            }
        } else if (message_.make_private) {
            if (message_.to.empty()) throw InvalidMessage("to", "is empty; nobody to send to");
            const std::size_t to_count = message_.to.size();
            if (to_count > limits::max_personalizations) {
                throw InvalidMessage("to",
                                     "make_private gives one personalization per address; "
                                     "SendGrid allows at most 1000, got " +
                                         std::to_string(to_count));
            }
            const Personalization from_message;  // every field comes from the message
            for (std::size_t i = 0; i < to_count; ++i) {
                personalization(from_message, &message_.to[i], 1, "", recipients, i);
            }
        } else {
            const Personalization from_message;
            personalization(from_message, message_.to.data(), message_.to.size(), "", recipients);
        }
        sink_.end_array();
        if (recipients > limits::max_recipients) {
            throw InvalidMessage("to", "the message has " + std::to_string(recipients) +
                                           " recipients in to, cc and bcc; SendGrid allows at "
                                           "most 1000 per request");
        }
    }

    /// One personalization to the `to_count` addresses at `to`; the other empty fields of `p`
    /// are filled from the message. `prefix` is "personalizations[i]." for explicit ones and ""
    /// for those built from the message. `to_index` numbers `to` in error paths.
    void personalization(const Personalization& p, const std::string* to, std::size_t to_count,
                         const std::string& prefix, std::size_t& recipients,
                         std::size_t to_index = 0) {
        const std::vector<std::string>& cc = p.cc.empty() ? message_.cc : p.cc;
        const std::vector<std::string>& bcc = p.bcc.empty() ? message_.bcc : p.bcc;
        const std::size_t expected = to_count + cc.size() + bcc.size();
        PersonalizationRecipients people(options_.deduplicate_recipients, expected);
        // to, then cc, then bcc, in one list: one allocation per personalization.
        std::vector<AddressView> people_list;
        people_list.reserve(expected);
        // cc and bcc taken from the message are named as the message's. (Views of `prefix`
        // itself: `cond ? "" : prefix` would be a temporary copy, gone after the call.)
        using ListName = PersonalizationRecipients::ListName;
        const std::string_view own_prefix = prefix;
        people.add(people_list, to, to_count, ListName{own_prefix, "to"}, false, to_index);
        const std::size_t to_end = people_list.size();
        people.add(people_list, cc.data(), cc.size(),
                   ListName{p.cc.empty() ? std::string_view() : own_prefix, "cc"}, true);
        const std::size_t cc_end = people_list.size();
        people.add(people_list, bcc.data(), bcc.size(),
                   ListName{p.bcc.empty() ? std::string_view() : own_prefix, "bcc"}, true);
        if (to_end == 0) {
            throw InvalidMessage(prefix + "to",
                                 "is empty; SendGrid requires at least one 'to' "
                                 "in every personalization");
        }
        recipients += people.count();

        sink_.begin_object();
        if (has_own_envelope(p) || !message_.make_private) {
            envelope(p, prefix);
        } else {
            // make_private writes up to 1000 personalizations from the message: they share
            // one envelope, checked and written once, then repeated.
            if (!message_envelope_) {
                message_envelope_ =
                    sink_.capture_members([this] { envelope(Personalization{}, ""); });
            }
            sink_.replay_members(*message_envelope_);
        }
        const AddressView* const people_at = people_list.data();
        sink_.key("to");
        write_addresses(people_at, people_at + to_end);
        if (cc_end > to_end) {
            sink_.key("cc");
            write_addresses(people_at + to_end, people_at + cc_end);
        }
        if (people_list.size() > cc_end) {
            sink_.key("bcc");
            write_addresses(people_at + cc_end, people_at + people_list.size());
        }
        sink_.end_object();
    }

    static bool has_own_envelope(const Personalization& p) {
        return !p.subject.empty() || !p.headers.empty() || !p.substitutions.empty() ||
               p.dynamic_template_data || !p.custom_args.empty() || p.send_at;
    }

    /// Everything of a personalization but its recipients, as members of the open object:
    /// subject, headers, substitutions, dynamic_template_data, custom_args and send_at, each from
    /// `p` or else from the message.
    void envelope(const Personalization& p, const std::string& prefix) {
        if (!p.subject.empty()) {
            require_single_line(p.subject, prefix + "subject");
            sink_.key("subject");
            sink_.string(p.subject);
        } else if (!message_.subject.empty()) {
            sink_.key("subject");
            sink_.string(message_.subject);
        }

        if (!p.headers.empty()) {
            std::map<std::string, std::string> merged = headers_;
            for (const auto& [name, value] : p.headers) {
                check_header(name, value, prefix + "headers");
                merged[name] = value;
            }
            sink_.key("headers");
            write_string_map(sink_, merged, prefix + "headers", false);
        } else if (!headers_.empty()) {
            sink_.key("headers");
            write_string_map(sink_, headers_, "headers", false);
        }

        if (!p.substitutions.empty()) {
            sink_.key("substitutions");
            write_string_map(sink_, p.substitutions, prefix + "substitutions", true);
        } else if (!message_.substitutions.empty()) {
            sink_.key("substitutions");
            write_string_map(sink_, message_.substitutions, "substitutions", true);
        }

        const TemplateData& data =
            p.dynamic_template_data ? p.dynamic_template_data : message_.dynamic_template_data;
        if (data) {
            const std::string field = p.dynamic_template_data ? prefix + "dynamic_template_data"
                                                              : "dynamic_template_data";
            TemplateDataAccess::check(data, field);
            sink_.key("dynamic_template_data");
            sink_.template_data(data, field);
        }

        if (!p.custom_args.empty()) {
            sink_.key("custom_args");
            write_string_map(sink_, p.custom_args, prefix + "custom_args", true);
        } else if (!message_.custom_args.empty()) {
            sink_.key("custom_args");
            write_string_map(sink_, message_.custom_args, "custom_args", true);
        }

        const std::optional<std::int64_t>& send_at = p.send_at ? p.send_at : message_.send_at;
        if (send_at) {
            if (*send_at < 0) {
                throw InvalidMessage(p.send_at ? prefix + "send_at" : "send_at",
                                     "must be a unix time, not negative");
            }
            sink_.key("send_at");
            sink_.integer(*send_at);
        }
    }

    /// text/plain first, then AMP, then text/html, then any other type (SendGrid's order).
    static int content_rank(std::string_view mimetype) {
        if (iequals(mimetype, "text/plain")) return 0;
        if (iequals(mimetype, "text/x-amp-html")) return 1;
        if (iequals(mimetype, "text/html")) return 2;
        return 3;
    }

    /// One content part: the body, or alternatives[alternative].
    struct ContentPart {
        std::string type;
        const std::string* value;
        std::size_t alternative;  ///< npos for the body
    };

    /// " ": what the original sends for an empty body or a missing plain part (SendGrid
    /// refuses empty values).
    static const std::string& blank() {
        static const std::string text = " ";
        return text;
    }

    void content() {
        require_single_line(message_.content_subtype, "content_subtype");
        if (message_.content_subtype.empty()) {
            throw InvalidMessage("content_subtype", "is empty; use \"plain\" or \"html\"");
        }
        require_mail_text(message_.body, "body");
        if (message_.body.empty() && message_.alternatives.empty()) {
            throw InvalidMessage("body",
                                 "is empty and there is no alternative or template_id; "
                                 "SendGrid needs some content");
        }
        const std::string& body = message_.body.empty() ? blank() : message_.body;
        ContentPart body_part{"text/" + message_.content_subtype, &body, std::string::npos};
        if (message_.alternatives.empty()) {  // most messages: nothing to order or compare
            write_content_parts(&body_part, &body_part + 1);
            return;
        }
        std::vector<ContentPart> parts;
        parts.reserve(1 + message_.alternatives.size());
        parts.push_back(std::move(body_part));
        for (std::size_t i = 0; i < message_.alternatives.size(); ++i) {
            const Alternative& alternative = message_.alternatives[i];
            const std::string field = indexed("alternatives", i);
            require_single_line(alternative.mimetype, field + ".mimetype");
            if (alternative.mimetype.empty()) throw InvalidMessage(field + ".mimetype", "is empty");
            require_mail_text(alternative.content, field + ".content");
            if (alternative.content.empty()) {
                throw InvalidMessage(field + ".content",
                                     "is empty; SendGrid refuses empty content");
            }
            parts.push_back(ContentPart{alternative.mimetype, &alternative.content, i});
        }
        // Stable by rank, one insertion at a time: a handful of parts, no buffer to allocate as
        // std::stable_sort does, and less code for every sending file than rotate/upper_bound.
        for (std::size_t i = 1; i < parts.size(); ++i) {
            for (std::size_t k = i;
                 k > 0 && content_rank(parts[k - 1].type) > content_rank(parts[k].type); --k) {
                std::swap(parts[k - 1], parts[k]);
            }
        }
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
        write_content_parts(parts.data(), parts.data() + parts.size());
    }

    /// The parts in [first, last), ordered, as the content array.
    void write_content_parts(const ContentPart* first, const ContentPart* last) {
        sink_.key("content");
        sink_.begin_array();
        // As in the original, a message without a plain part (an html body) gets " " as plain.
        if (content_rank(first->type) != 0) write_content("text/plain", blank());
        for (; first != last; ++first) {
            estimated_bytes_ += first->value->size();
            write_content(first->type, *first->value);
        }
        sink_.end_array();
    }

    void write_content(std::string_view type, const std::string& value) {
        sink_.begin_object();
        sink_.key("type");
        sink_.string(type);
        sink_.key("value");
        sink_.string(value);
        sink_.end_object();
    }

    void attachments() {
        struct Checked {
            std::string type;
            std::string filename;
            std::string_view content_id;
        };
        std::vector<Checked> checked;
        checked.reserve(message_.attachments.size());
        for (std::size_t i = 0; i < message_.attachments.size(); ++i) {
            const Attachment& attachment = message_.attachments[i];
            const std::string field = indexed("attachments", i);
            if (attachment.content.empty()) {
                throw InvalidMessage(field + ".content", "is empty; SendGrid refuses empty files");
            }
            require_single_line(attachment.filename, field + ".filename");
            require_single_line(attachment.mimetype, field + ".mimetype");
            require_single_line(attachment.content_id, field + ".content_id");
            std::string type = attachment.mimetype.empty()
                                   ? std::string(guess_mimetype(attachment.filename))
                                   : attachment.mimetype;
            std::string filename =
                attachment.filename.empty()
                    ? "part-" + content_hex_id(attachment.content, i) + guess_extension(type)
                    : attachment.filename;
            std::string_view id = attachment.content_id;
            if (!id.empty()) {
                // SendGrid adds the angle brackets itself.
                if (id.size() >= 2 && id.front() == '<' && id.back() == '>') {
                    id = id.substr(1, id.size() - 2);
                }
                if (id.empty()) throw InvalidMessage(field + ".content_id", "is empty inside <>");
            }
            estimated_bytes_ += base64_encoded_size(attachment.content.size());
            checked.push_back(Checked{std::move(type), std::move(filename), id});
        }
        sink_.key("attachments");
        sink_.begin_array();
        for (std::size_t i = 0; i < checked.size(); ++i) {
            sink_.begin_object();
            sink_.key("content");
            sink_.base64_string(message_.attachments[i].content);
            sink_.key("filename");
            sink_.string(checked[i].filename);
            sink_.key("type");
            sink_.string(checked[i].type);
            if (!checked[i].content_id.empty()) {
                sink_.key("content_id");
                sink_.string(checked[i].content_id);
                sink_.key("disposition");
                sink_.string("inline");
            }
            sink_.end_object();
        }
        sink_.end_array();
    }

    void categories() {
        const auto& categories = message_.categories;
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
        sink_.key("categories");
        sink_.begin_array();
        for (const auto& category : categories) sink_.string(category);
        sink_.end_array();
    }

    void unsubscribe_group() {
        const UnsubscribeGroup& group = *message_.unsubscribe_group;
        if (!group.group_id) {
            throw InvalidMessage("unsubscribe_group.group_id", "is required by SendGrid's asm");
        }
        if (group.groups_to_display.size() > limits::max_groups_to_display) {
            throw InvalidMessage("unsubscribe_group.groups_to_display",
                                 "has " + std::to_string(group.groups_to_display.size()) +
                                     " entries; SendGrid allows at most 25");
        }
        sink_.key("asm");
        sink_.begin_object();
        sink_.key("group_id");
        sink_.integer(*group.group_id);
        if (!group.groups_to_display.empty()) {
            sink_.key("groups_to_display");
            sink_.begin_array();
            for (std::int64_t id : group.groups_to_display) sink_.integer(id);
            sink_.end_array();
        }
        sink_.end_object();
    }

    void ip_pool_name() {
        const std::string& name = *message_.ip_pool_name;
        require_single_line(name, "ip_pool_name");
        std::size_t characters = 0;
        for (char c : name) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
        if (characters < limits::min_ip_pool_name || characters > limits::max_ip_pool_name) {
            throw InvalidMessage("ip_pool_name", "has " + std::to_string(characters) +
                                                     " characters; SendGrid wants 2 to 64");
        }
        sink_.key("ip_pool_name");
        sink_.string(name);
    }

    void mail_settings() {
        const MailSettings& settings = message_.mail_settings;
        if (settings.footer) {
            require_mail_text(settings.footer->text, "mail_settings.footer.text");
            require_mail_text(settings.footer->html, "mail_settings.footer.html");
        }
        sink_.key("mail_settings");
        sink_.begin_object();
        sink_.key("sandbox_mode");
        begin_enable(sink_, options_.sandbox_mode);
        sink_.end_object();
        auto flag = [this](const char* name, const std::optional<bool>& value) {
            if (!value) return;
            sink_.key(name);
            begin_enable(sink_, *value);
            sink_.end_object();
        };
        flag("bypass_list_management", settings.bypass_list_management);
        flag("bypass_spam_management", settings.bypass_spam_management);
        flag("bypass_bounce_management", settings.bypass_bounce_management);
        flag("bypass_unsubscribe_management", settings.bypass_unsubscribe_management);
        if (settings.footer) {
            sink_.key("footer");
            begin_enable(sink_, settings.footer->enable);
            optional_text("text", settings.footer->text);
            optional_text("html", settings.footer->html);
            sink_.end_object();
        }
        sink_.end_object();
    }

    void optional_text(const char* key, const std::string& value) {
        if (value.empty()) return;
        sink_.key(key);
        sink_.string(value);
    }

    void tracking_settings() {
        const TrackingSettings& overrides = message_.tracking_settings;
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
            const GoogleAnalytics& g = *overrides.ganalytics;
            for (const auto& [name, value] : utm_fields(g)) {
                require_single_line(*value, std::string("tracking_settings.ganalytics.") + name);
            }
        }
        sink_.key("tracking_settings");
        sink_.begin_object();
        sink_.key("open_tracking");
        begin_enable(sink_, overrides.track_email_opens.value_or(options_.track_email_opens));
        optional_text("substitution_tag", overrides.open_tracking_substitution_tag);
        sink_.end_object();
        sink_.key("click_tracking");
        begin_enable(sink_, overrides.track_clicks_html.value_or(options_.track_clicks_html));
        sink_.key("enable_text");
        sink_.boolean(overrides.track_clicks_plain.value_or(options_.track_clicks_plain));
        sink_.end_object();
        if (overrides.subscription_tracking) {
            const SubscriptionTracking& s = *overrides.subscription_tracking;
            sink_.key("subscription_tracking");
            begin_enable(sink_, s.enable);
            optional_text("text", s.text);
            optional_text("html", s.html);
            optional_text("substitution_tag", s.substitution_tag);
            sink_.end_object();
        }
        if (overrides.ganalytics) {
            sink_.key("ganalytics");
            begin_enable(sink_, overrides.ganalytics->enable);
            for (const auto& [name, value] : utm_fields(*overrides.ganalytics)) {
                optional_text(name, *value);
            }
            sink_.end_object();
        }
        sink_.end_object();
    }

    static std::array<std::pair<const char*, const std::string*>, 5> utm_fields(
        const GoogleAnalytics& g) {
        return {{{"utm_source", &g.utm_source},
                 {"utm_medium", &g.utm_medium},
                 {"utm_term", &g.utm_term},
                 {"utm_content", &g.utm_content},
                 {"utm_campaign", &g.utm_campaign}}};
    }

    const EmailMessage& message_;
    const PayloadOptions& options_;
    Sink& sink_;
    std::map<std::string, std::string> headers_;
    std::optional<typename Sink::Members> message_envelope_;
    std::size_t estimated_bytes_ = 0;
};

}  // namespace detail

/// Validates `message` and maps it to the JSON body of `POST /v3/mail/send`, rule by rule as
/// django-sendgrid-v5's `_build_sg_mail` (README "Payload mapping" lists every rule).
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
    detail::PayloadWriter<detail::BasicJsonDomSink<Json>>(message, options, sink).write();
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
    detail::PayloadWriter<detail::JsonTextSink>(message, options, sink).write();
    return sink.take();
}
#endif

SENDGRID_BACKEND_NAMESPACE_END
