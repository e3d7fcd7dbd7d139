#pragma once

/// @file
/// The top-level keys SendGrid documents for Event Webhook events, each with the WebhookEvent
/// field it fills (or none), looked up among the keys of the same length: any other key is a
/// custom arg.

#include <array>
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// What a top-level key of an event is: a custom arg, a key SendGrid documents that has no field
/// of its own (kept in `raw` only), or the key of one field.
enum class EventKey : unsigned char {
    custom,
    documented,
    email,
    timestamp,
    event,
    smtp_id,
    sg_event_id,
    sg_message_id,
    category,
    ip,
    useragent,
    tls,
    reason,
    status,
    type,
    attempt,
    url,
    url_offset,
    asm_group_id,
    marketing_campaign_id,
    marketing_campaign_name,
    marketing_campaign_version,
    marketing_campaign_split_id,
    bounce_classification,
};

struct NamedEventKey {
    std::string_view name;
    EventKey key;
};

/// Sorted by name, byte-wise, without repeats (checked below).
inline constexpr NamedEventKey documented_event_keys[] = {
    {"asm_group_id", EventKey::asm_group_id},
    {"attempt", EventKey::attempt},
    {"bounce_classification", EventKey::bounce_classification},
    {"category", EventKey::category},
    {"cert_err", EventKey::documented},
    {"email", EventKey::email},
    {"event", EventKey::event},
    {"ip", EventKey::ip},
    {"marketing_campaign_id", EventKey::marketing_campaign_id},
    {"marketing_campaign_name", EventKey::marketing_campaign_name},
    {"marketing_campaign_split_id", EventKey::marketing_campaign_split_id},
    {"marketing_campaign_version", EventKey::marketing_campaign_version},
    {"mc_stats", EventKey::documented},
    {"newsletter", EventKey::documented},
    {"phase_id", EventKey::documented},
    {"pool", EventKey::documented},
    {"post_type", EventKey::documented},
    {"reason", EventKey::reason},
    {"response", EventKey::documented},
    {"send_at", EventKey::documented},
    {"sg_content_type", EventKey::documented},
    {"sg_event_id", EventKey::sg_event_id},
    {"sg_machine_open", EventKey::documented},
    {"sg_message_id", EventKey::sg_message_id},
    {"sg_template_id", EventKey::documented},
    {"sg_template_name", EventKey::documented},
    {"sg_user_id", EventKey::documented},
    {"singlesend_id", EventKey::documented},
    {"singlesend_name", EventKey::documented},
    {"smtp-id", EventKey::smtp_id},
    {"status", EventKey::status},
    {"template_hash", EventKey::documented},
    {"template_id", EventKey::documented},
    {"template_name", EventKey::documented},
    {"template_version_id", EventKey::documented},
    {"timestamp", EventKey::timestamp},
    {"tls", EventKey::tls},
    {"type", EventKey::type},
    {"unique_args", EventKey::documented},
    {"url", EventKey::url},
    {"url_offset", EventKey::url_offset},
    {"useragent", EventKey::useragent},
};

constexpr bool event_keys_sorted() noexcept {
    for (std::size_t i = 1; i < std::size(documented_event_keys); ++i) {
        if (!(documented_event_keys[i - 1].name < documented_event_keys[i].name)) return false;
    }
    return true;
}
static_assert(event_keys_sorted(), "documented_event_keys must be sorted and without repeats");

/// Whether SendGrid documents `name` as a key of its events. A custom arg of that name is not
/// read as one (the event's own key is), so no tracking key can travel under it.
constexpr bool is_documented_event_key(std::string_view name) noexcept {
    for (const NamedEventKey& entry : documented_event_keys) {
        if (entry.name == name) return true;
    }
    return false;
}

/// What is wrong with `name` as the custom arg that carries tracking keys; empty: nothing.
inline std::string tracking_arg_problem(std::string_view name) {
    if (!is_documented_event_key(name)) return std::string();
    return "is \"" + std::string(name) +
           "\", a key SendGrid's events have of their own: events would not carry the tracking "
           "key under it; choose another name";
}

/// documented_event_keys by length, then name: a key is compared only with the few of its
/// length (every event's dozen or so keys are looked up, most of them by a memcmp or two).
struct EventKeysByLength {
    static constexpr std::size_t longest = 32;  // above the longest documented key
    std::array<NamedEventKey, std::size(documented_event_keys)> keys{};
    std::array<std::size_t, longest + 2> first{};  ///< first[n]: where length n begins in keys
};

constexpr EventKeysByLength event_keys_by_length() noexcept {
    EventKeysByLength table;
    std::size_t count = 0;
    for (std::size_t length = 0; length <= EventKeysByLength::longest; ++length) {
        table.first[length] = count;
        for (const NamedEventKey& entry : documented_event_keys) {
            if (entry.name.size() == length) table.keys[count++] = entry;
        }
    }
    table.first[EventKeysByLength::longest + 1] = count;
    return table;
}

inline constexpr EventKeysByLength event_keys_of_length = event_keys_by_length();
static_assert(event_keys_of_length.first[EventKeysByLength::longest + 1] ==
                  std::size(documented_event_keys),
              "a documented event key is longer than EventKeysByLength::longest");

static_assert(event_keys_of_length.first[1] == 0,
              "event_key reads a key's first byte: no documented key may be empty");

/// The kind of the top-level key `name`; EventKey::custom for a key SendGrid does not document.
inline EventKey event_key(std::string_view name) noexcept {
    const EventKeysByLength& table = event_keys_of_length;
    if (name.size() > EventKeysByLength::longest) return EventKey::custom;
    for (std::size_t i = table.first[name.size()]; i < table.first[name.size() + 1]; ++i) {
        // The first byte before the rest: most keys of a length differ there, and most
        // lookups are then one comparison of bytes.
        const std::string_view known = table.keys[i].name;
        if (known[0] == name[0] && known == name) return table.keys[i].key;
    }
    return EventKey::custom;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
