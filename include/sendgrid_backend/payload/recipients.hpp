#pragma once

/// @file
/// Addresses in a payload: how one is written, the recipients of one personalization checked
/// and de-duplicated, and the message's reply_to or reply_to_list.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// {"email": ..., "name": ...}, the name only when there is one.
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

/// The addresses in [first, last) as an array.
template <class Sink>
void write_addresses(Sink& sink, const AddressView* first, const AddressView* last) {
    sink.begin_array();
    for (; first != last; ++first) write_address(sink, *first);
    sink.end_array();
}

/// Case-insensitive (ASCII) hashing for addresses.
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
            if (skip_blank && trim(addresses[i]).empty()) continue;
            AddressView address = parse(addresses[i], field, first_index + i);
            if (!single_) {
                if (const std::uint8_t* first = find(address.email)) {
                    if (is_dropped_repeat(fields_[*first], field)) continue;
                    throw repeated(address, fields_[*first], field, first_index + i);
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

    /// Whether an address already in `first_field` is dropped when it comes again in `field`.
    /// Within cc and within bcc, the original drops repeats silently; elsewhere it is a mistake
    /// worth reporting unless the caller asked for de-duplication.
    bool is_dropped_repeat(const ListName& first_field, const ListName& field) const {
        return deduplicate_ || (first_field == field && field.name != "to");
    }

    /// The error for `address`, `field[index]`, which `first_field` holds already.
    static InvalidMessage repeated(const AddressView& address, const ListName& first_field,
                                   const ListName& field, std::size_t index) {
        return InvalidMessage(indexed(field.str(), index),
                              quote_for_error(address.email) + " is already in " +
                                  first_field.str() +
                                  "; SendGrid refuses an address twice in one "
                                  "personalization (set deduplicate_recipients "
                                  "to drop repeats)");
    }

    std::uint8_t add_field(const ListName& field) {
        fields_[field_count_] = field;
        return static_cast<std::uint8_t>(field_count_++);
    }

    /// The fields_ index of the list that already holds `email`, or null.
    const std::uint8_t* find(std::string_view email) const {
        if (!slots_.empty()) {
            for (std::size_t i = first_slot(email);; i = (i + 1) & (slots_.size() - 1)) {
                const auto& [seen, field] = slots_[i];
                if (seen.data() == nullptr) return nullptr;
                if (iequals(seen, email)) return &field;
            }
        }
        for (const auto& [seen, field] : small_) {
            if (iequals(seen, email)) return &field;
        }
        return nullptr;
    }

    void remember(std::string_view email, std::uint8_t field_index) {
        // Most personalizations hold a handful of addresses: a list beats a hash table there.
        if (slots_.empty() && small_.size() < small_limit) {
            small_.emplace_back(email, field_index);
            return;
        }
        if (slots_.empty()) {
            rehash(small_limit * 4);
            for (const auto& entry : small_) place(entry);
            small_.clear();
        }
        if (stored_ * 2 >= slots_.size()) rehash(slots_.size() * 2);
        place({email, field_index});
    }

    // The hash table: open addressing with linear probing in a vector of the same type as
    // small_ (a std::unordered_map would add its own code to every file that sends); a slot
    // whose view has no data is free (an address's view always points into its text).
    using Entry = std::pair<std::string_view, std::uint8_t>;

    std::size_t first_slot(std::string_view email) const noexcept {
        return AddressKeyHash{}(email) & (slots_.size() - 1);
    }
    void place(const Entry& entry) {
        std::size_t i = first_slot(entry.first);
        while (slots_[i].first.data() != nullptr) i = (i + 1) & (slots_.size() - 1);
        slots_[i] = entry;
        ++stored_;
    }
    /// Moves the entries into `size` slots (a power of two, more than twice the entries).
    void rehash(std::size_t size) {
        std::vector<Entry> old(size);
        old.swap(slots_);
        stored_ = 0;
        for (const auto& entry : old) {
            if (entry.first.data() != nullptr) place(entry);
        }
    }

    bool deduplicate_;
    bool single_;
    std::array<ListName, 3> fields_;  // the lists added so far: to, cc, bcc
    std::size_t field_count_ = 0;
    std::vector<Entry> small_;  // email -> fields_ index, while there are few
    std::vector<Entry> slots_;  // the same, as a hash table once there are more
    std::size_t stored_ = 0;    // entries in slots_
    std::size_t count_ = 0;
};

/// The address of the last Reply-To among the extra headers (any case), if any.
inline std::optional<AddressView> reply_to_header(
    const std::map<std::string, std::string>& extra_headers) {
    std::optional<AddressView> reply_to;
    for (const auto& [name, value] : extra_headers) {
        if (iequals(name, "reply-to"))
            reply_to = parse_address_view(value, keyed("extra_headers", name));
    }
    return reply_to;
}

/// The one reply-to address: from `reply_to`, or else from the Reply-To header, which must
/// agree with it when both are given.
inline std::optional<AddressView> single_reply_to(const EmailMessage& message) {
    std::optional<AddressView> reply_to = reply_to_header(message.extra_headers);
    if (message.reply_to.size() > 1) {
        throw InvalidMessage("reply_to",
                             "SendGrid allows one reply-to address; use "
                             "reply_to_list for several");
    }
    if (message.reply_to.size() == 1) {
        AddressView from_field = parse_address_view(message.reply_to[0], "reply_to[0]");
        if (reply_to && *reply_to != from_field) {
            throw InvalidMessage("reply_to",
                                 "differs from the Reply-To header; SendGrid "
                                 "allows one reply-to address");
        }
        reply_to = std::move(from_field);
    }
    return reply_to;
}

/// reply_to_list, parsed; an address may appear once (any case).
inline std::vector<AddressView> checked_reply_to_list(const std::vector<std::string>& addresses) {
    std::vector<AddressView> list;
    std::set<std::string> seen;
    for (std::size_t i = 0; i < addresses.size(); ++i) {
        const std::string path = indexed("reply_to_list", i);
        AddressView address = parse_address_view(addresses[i], path);
        if (!seen.insert(to_lower_ascii(address.email)).second) {
            throw InvalidMessage(path, quote_for_error(address.email) + " is listed twice");
        }
        list.push_back(std::move(address));
    }
    return list;
}

/// "reply_to" or "reply_to_list", whichever the message has (never both).
template <class Sink>
void write_reply_to(Sink& sink, const EmailMessage& message) {
    const std::optional<AddressView> reply_to = single_reply_to(message);
    if (!message.reply_to_list.empty()) {
        if (reply_to) {
            throw InvalidMessage("reply_to_list",
                                 "cannot be used together with reply_to "
                                 "or a Reply-To header");
        }
        const std::vector<AddressView> list = checked_reply_to_list(message.reply_to_list);
        sink.key("reply_to_list");
        write_addresses(sink, list.data(), list.data() + list.size());
    }
    if (reply_to) {
        sink.key("reply_to");
        write_address(sink, *reply_to);
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
