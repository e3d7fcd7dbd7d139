#pragma once

/// @file
/// The status rules, in one place: how a send's outcome, a queue move and each Event Webhook
/// event become a `PreparedFact` for a store, and how a stored record reads back as a
/// `MessageStatus`. Every rule is a join, so the status is a function of the set of facts seen:
///
/// - Each recipient's state is the greatest `DeliveryState` any of its facts implies
///   (`event_rules` says which state each event implies). Hence: delivered beats deferred
///   whatever the order; bounced and dropped are final; an open, a click, a spam report or an
///   unsubscribe implies delivered; a later soft bounce ("blocked") does not undo delivered.
///   Between facts implying the same state, the later one (then a hash) gives the reason.
/// - Every event is also counted per kind, with its first and last time: opens and clicks.
/// - A fact is applied once per message, identified by its content without `sg_event_id`: so
///   SendGrid's copies of an event, with the same id or a fresh one, change nothing twice.
///   (Two real opens in the same second from the same address and agent count once.)
/// - The send: the greatest of queued < sending < failed < unknown < accepted its facts imply;
///   any event of the message implies accepted (an "unknown" send that SendGrid did take).
/// - An event for a key that has no send recorded yet is kept; the send merges in when it comes.
/// - Events without the tracking argument are not about a tracked message and are left out.

#include <algorithm>
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
#include "sendgrid_backend/detail/status/record_ops.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/status/state.hpp"
#include "sendgrid_backend/status/store.hpp"
#include "sendgrid_backend/webhook_events.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// What one kind of event means for its recipient: the state it implies and the count it adds
/// to. The table is the rules; tests/test_status_rules.cpp checks it row by row.
struct EventRule {
    EventType type;
    DeliveryState implies;
    const char* count;  ///< the record's count field, e.g. "open"
    EventCount RecipientStatus::*counted;
};

inline constexpr EventRule event_rules[] = {
    {EventType::processed, DeliveryState::processed, "processed", &RecipientStatus::processed},
    {EventType::deferred, DeliveryState::deferred, "deferred", &RecipientStatus::deferred},
    {EventType::delivered, DeliveryState::delivered, "delivered", &RecipientStatus::delivered},
    // A bounce of type "blocked" implies DeliveryState::blocked instead (see rule_for).
    {EventType::bounce, DeliveryState::bounced, "bounce", &RecipientStatus::bounce},
    {EventType::dropped, DeliveryState::dropped, "dropped", &RecipientStatus::dropped},
    {EventType::open, DeliveryState::delivered, "open", &RecipientStatus::open},
    {EventType::click, DeliveryState::delivered, "click", &RecipientStatus::click},
    {EventType::spamreport, DeliveryState::delivered, "spamreport", &RecipientStatus::spamreport},
    {EventType::unsubscribe, DeliveryState::delivered, "unsubscribe",
     &RecipientStatus::unsubscribe},
    {EventType::group_unsubscribe, DeliveryState::delivered, "group_unsubscribe",
     &RecipientStatus::group_unsubscribe},
    {EventType::group_resubscribe, DeliveryState::delivered, "group_resubscribe",
     &RecipientStatus::group_resubscribe},
};

/// The rule for `event`, with a "blocked" bounce's state; null for an unknown kind.
inline std::optional<EventRule> rule_for(const WebhookEvent& event) noexcept {
    for (const EventRule& rule : event_rules) {
        if (rule.type != event.type) continue;
        EventRule result = rule;
        if (event.type == EventType::bounce && event.bounce_type == "blocked") {
            result.implies = DeliveryState::blocked;
        }
        return result;
    }
    return std::nullopt;
}

/// The state a send's outcome implies for the message and each of its recipients.
constexpr DeliveryState state_of(SendStatus status) noexcept {
    switch (status) {
        case SendStatus::accepted:
            return DeliveryState::accepted;
        case SendStatus::unknown:
            return DeliveryState::unknown;
        case SendStatus::not_attempted:
            return DeliveryState::none;
        case SendStatus::rejected:
        case SendStatus::transport_failed:
        case SendStatus::invalid:
        case SendStatus::cancelled:
            return DeliveryState::failed;
    }
    return DeliveryState::none;
}

namespace detail {

/// The fields a record holds for a recipient (or, `target` empty, the send), as
/// "<target>|<name>": an address holds no '|' that matters, since names are split at the last.
/// `prefix` + `name` is the field's name, made in place (e.g. "n." and a count's name).
inline std::string status_field(std::string_view target, std::string_view name,
                                std::string_view prefix = {}) {
    std::string field;
    field.reserve(target.size() + 1 + prefix.size() + name.size());
    field.append(target).append(1, '|').append(prefix).append(name);
    return field;
}

/// The counts a change is judged by (RecipientStatus::summary), after the state's rank.
inline constexpr const char* engagement_counts[] = {
    "open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"};

/// How many fields `watch_target` watches for `target`: a recipient's state's rank and its
/// engagement counts; the send's (target "") only its rank, as no event is counted for it.
constexpr std::size_t watched_fields(std::string_view target) noexcept {
    return target.empty() ? 1 : 1 + std::size(engagement_counts);
}

inline void watch_target(PreparedFact& fact, std::string_view target) {
    fact.watch.reserve(fact.watch.size() + watched_fields(target));
    fact.watch.push_back(status_field(target, "s.rank"));
    if (target.empty()) return;
    for (const char* count : engagement_counts) {
        fact.watch.push_back(status_field(target, count, "n."));
    }
}

/// 64-bit FNV-1a: a fingerprint, not a secret (a collision merges two facts of one message).
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline std::uint64_t fnv1a(
    std::string_view text, std::uint64_t hash = 14695981039346656037ull) {
    for (char c : text) {
        hash ^= static_cast<unsigned char>(c);  // a byte: explicit, as it changes signed chars
        hash *= 1099511628211ull;
    }
    return hash;
}

/// Hashes `value`'s content (for an object, leaving out the member `skip`): equal JSON, equal
/// hash. Walks the tree in place; a copy and a dump of each event cost more than the rest of
/// its fact.
inline std::uint64_t content_hash(const nlohmann::json& value, std::uint64_t hash,
                                  std::string_view skip = {}) {
    const auto tag = [&hash](char kind) { return hash = fnv1a(std::string_view(&kind, 1), hash); };
    // A text goes in after its length, so that no two different trees give one stream.
    const auto text = [&hash](std::string_view bytes) {
        const std::uint64_t size = bytes.size();
        hash = fnv1a(std::string_view(reinterpret_cast<const char*>(&size), sizeof size), hash);
        return hash = fnv1a(bytes, hash);
    };
    switch (value.type()) {
        case nlohmann::json::value_t::object:
            tag('{');
            for (const auto& [key, member] : value.get_ref<const nlohmann::json::object_t&>()) {
                if (key == skip) continue;
                tag('k');
                text(key);
                hash = content_hash(member, hash);
            }
            return tag('}');
        case nlohmann::json::value_t::array:
            tag('[');
            for (const auto& item : value) hash = content_hash(item, hash);
            return tag(']');
        case nlohmann::json::value_t::string:
            tag('s');
            return text(value.get_ref<const std::string&>());
        case nlohmann::json::value_t::number_integer:
            tag('n');
            return text(std::to_string(value.get<std::int64_t>()));
        case nlohmann::json::value_t::number_unsigned:
            tag('n');
            return text(std::to_string(value.get<std::uint64_t>()));
        case nlohmann::json::value_t::number_float:
            tag('f');
            return text(value.dump());
        case nlohmann::json::value_t::boolean:
            return tag(value.get<bool>() ? 't' : 'F');
        default:  // null, binary, discarded
            return tag('0');
    }
}

inline std::string hex64(std::uint64_t value) {
    static const char digits[] = "0123456789abcdef";
    std::string text(16, '0');
    for (int i = 15; i >= 0; --i, value >>= 4)
        text[static_cast<std::size_t>(i)] = digits[value & 15];
    return text;
}

/// Lower case, as events and sends are matched by address.
inline std::string lower_email(std::string_view email) {
    std::string text(email);
    for (char& c : text) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return text;
}

/// A pick of `state` for `target`, ordered by (state, time, tie).
inline FieldOp pick_state(std::string_view target, DeliveryState state, std::int64_t time,
                          std::uint64_t hash,
                          std::vector<std::pair<std::string, std::string>> payload) {
    FieldOp op;
    op.kind = FieldOp::Kind::pick;
    op.field = status_field(target, "s");
    op.order = {static_cast<std::int64_t>(state), time,
                static_cast<std::int64_t>(hash & ((std::uint64_t{1} << 48) - 1))};
    op.payload = std::move(payload);
    return op;
}

/// What a pick of the send's state writes: the message id, the HTTP status and the reason.
inline std::vector<std::pair<std::string, std::string>> send_payload(std::string message_id,
                                                                     std::string http,
                                                                     std::string reason) {
    return {{status_field("", "msgid"), std::move(message_id)},
            {status_field("", "http"), std::move(http)},
            {status_field("", "reason"), std::move(reason)}};
}

/// What a pick of `recipient`'s state writes: the reason, SMTP status and classification.
inline std::vector<std::pair<std::string, std::string>> recipient_payload(
    std::string_view recipient, std::string reason, std::string smtp, std::string kind) {
    return {{status_field(recipient, "reason"), std::move(reason)},
            {status_field(recipient, "smtp"), std::move(smtp)},
            {status_field(recipient, "class"), std::move(kind)}};
}

/// Counts the event; its time (0: none usable) is the kind's first or last only when known.
inline void count_event(PreparedFact& fact, std::string_view target, const char* count,
                        std::int64_t time) {
    fact.ops.push_back({FieldOp::Kind::add, status_field(target, count, "n."), 1, {}, {}});
    if (time <= 0) return;
    fact.ops.push_back({FieldOp::Kind::min, status_field(target, count, "first."), time, {}, {}});
    fact.ops.push_back({FieldOp::Kind::max, status_field(target, count, "last."), time, {}, {}});
}

/// Unix seconds as a store keeps them: within ±2^53, so negative or absurd times become 0.
inline std::int64_t storable_time(std::int64_t time) noexcept {
    return time > 0 && time < (std::int64_t{1} << 53) ? time : 0;
}

}  // namespace detail

/// The tracking key `event` carries in `tracking_arg`; empty when it carries none (or not text).
inline std::string tracking_key_of(const WebhookEvent& event, const std::string& tracking_arg) {
    auto found = event.custom_args.find(tracking_arg);
    if (found == event.custom_args.end() || !found->is_string()) return "";
    return found->get<std::string>();
}

/// The fact `event` is, or nullopt when it is not about a tracked message (no tracking key, no
/// address, or a kind of event the rules do not know).
inline std::optional<PreparedFact> fact_from_event(const WebhookEvent& event,
                                                   const std::string& tracking_arg) {
    std::string key = tracking_key_of(event, tracking_arg);
    const std::optional<EventRule> rule = rule_for(event);
    if (key.empty() || event.email.empty() || !rule) return std::nullopt;
    PreparedFact fact;
    fact.key = std::move(key);
    fact.ops.reserve(5);  // the recipient's pick, its count's three, the send's pick
    const std::string recipient = detail::lower_email(event.email);
    // The event as SendGrid sent it, less the id its retries may change.
    const std::uint64_t hash =
        detail::content_hash(event.raw, detail::fnv1a(fact.key + '\n'), "sg_event_id");
    fact.fingerprint = "e" + detail::hex64(hash);
    const std::int64_t time = detail::storable_time(event.timestamp);
    // A state implied by an engagement (an open, a click) has no reason of its own.
    const bool own_reason =
        rule->implies != DeliveryState::delivered || rule->type == EventType::delivered;
    auto why = own_reason ? detail::recipient_payload(
                                recipient, event.reason, event.status,
                                detail::json_text(event.raw, "bounce_classification"))
                          : detail::recipient_payload(recipient, "", "", "");
    fact.ops.push_back(detail::pick_state(recipient, rule->implies, time, hash, std::move(why)));
    detail::count_event(fact, recipient, rule->count, time);
    // Any event says SendGrid took the message; a recorded send (time > 0) tells it better.
    const std::string_view message_id =
        std::string_view(event.sg_message_id).substr(0, event.sg_message_id.find('.'));
    // Ties between events naming different ids (one key on two sends) go by the id's hash, not
    // by which event came first.
    fact.ops.push_back(detail::pick_state("", DeliveryState::accepted, 0, detail::fnv1a(message_id),
                                          detail::send_payload(std::string(message_id), "", "")));
    detail::watch_target(fact, recipient);
    detail::watch_target(fact, "");
    return fact;
}

/// The fact a send's outcome is, for the message with tracking key `key`, at `time` (unix
/// seconds). Its recipients (their addresses, any form) each get the send's state. For one part
/// of a message sent in parts, `part` names it (e.g. "part 2"): its recipients only then, and no
/// message-level state (the whole message's outcome is a fact of its own).
inline PreparedFact fact_from_outcome(const std::string& key, const SendOutcome& outcome,
                                      const std::vector<std::string>& recipients, std::int64_t time,
                                      const std::string& part = std::string()) {
    PreparedFact fact;
    fact.key = key;
    const DeliveryState state = state_of(outcome.status);
    // An address in several personalizations counts once. A set: a message sent in parts may
    // have many thousands.
    std::set<std::string> done;
    std::vector<const std::string*> targets;  // in the message's order
    for (const std::string& text : recipients) {
        std::string recipient;
        try {
            recipient = detail::lower_email(detail::parse_address_view(text, "").email);
        } catch (const InvalidMessage&) {
            continue;  // an invalid message's bad address: nothing to track for it
        }
        if (recipient.empty()) continue;
        auto [at, added] = done.insert(std::move(recipient));
        if (added) targets.push_back(&*at);
    }
    // The recipients are part of what the send is: the same key sent twice to different people
    // with the same outcome is two facts, not a copy.
    const std::string identity = std::string("send\n") + to_string(outcome.status) + "\n" +
                                 std::to_string(outcome.http_status) + "\n" + outcome.message_id +
                                 "\n" + outcome.failure_reason + (part.empty() ? "" : "\n") + part;
    std::uint64_t hash = detail::fnv1a(identity, detail::fnv1a(key + '\n'));
    for (const std::string& recipient : done) {
        hash = detail::fnv1a("\n", detail::fnv1a(recipient, hash));  // as of recipient + '\n'
    }
    fact.fingerprint = "s" + detail::hex64(hash);
    time = detail::storable_time(time);
    if (part.empty()) {
        fact.ops.push_back(detail::pick_state(
            "", state, time, hash,
            detail::send_payload(outcome.message_id, std::to_string(outcome.http_status),
                                 outcome.failure_reason)));
        detail::watch_target(fact, "");
    }
    for (const std::string* recipient : targets) {
        fact.ops.push_back(detail::pick_state(
            *recipient, state, time, hash,
            detail::recipient_payload(
                *recipient,
                state == DeliveryState::accepted ? std::string() : outcome.failure_reason, "",
                "")));
        detail::watch_target(fact, *recipient);
    }
    return fact;
}

/// The fact that the queue moved the message with key `key` to `state` (queued, sending, or
/// failed when cancelled), with `reason` as the send's reason when there is one ("cancelled").
inline PreparedFact fact_from_queue(const std::string& key, DeliveryState state, std::int64_t time,
                                    const std::string& reason = std::string()) {
    PreparedFact fact;
    fact.key = key;
    const std::uint64_t hash =
        detail::fnv1a(std::string("queue\n") + to_string(state), detail::fnv1a(key + '\n'));
    fact.fingerprint = "q" + detail::hex64(hash);
    std::vector<std::pair<std::string, std::string>> why;
    if (!reason.empty()) {
        why = detail::send_payload("", "", reason);
    }
    fact.ops.push_back(
        detail::pick_state("", state, detail::storable_time(time), hash, std::move(why)));
    detail::watch_target(fact, "");
    return fact;
}

namespace detail {

inline EventCount* count_named(RecipientStatus& status, std::string_view name) {
    for (const EventRule& rule : event_rules) {
        if (name == rule.count) return &(status.*rule.counted);
    }
    return nullptr;
}

inline std::int64_t integer_text(const std::string& text) {
    StatusRecord one{{"", text}};
    return record_integer(one, "").value_or(0);
}

/// Reads one "<name>" of a target's fields into `status`.
inline void read_status_field(RecipientStatus& status, std::string_view name,
                              const std::string& value) {
    if (name == "s.rank") {
        const std::int64_t rank = integer_text(value);
        if (rank >= 0 && rank <= static_cast<std::int64_t>(DeliveryState::dropped)) {
            status.state = static_cast<DeliveryState>(rank);
        }
    } else if (name == "s.time") {
        status.state_time = integer_text(value);
    } else if (name == "reason") {
        status.reason = value;
    } else if (name == "smtp") {
        status.smtp_status = value;
    } else if (name == "class") {
        status.classification = value;
    } else if (name == "msgid") {
        status.message_id = value;
    } else if (name == "http") {
        status.http_status = static_cast<int>(integer_text(value) % 1000);
    } else {
        for (const auto& [prefix, member] :
             {std::pair<std::string_view, std::int64_t EventCount::*>{"n.", &EventCount::count},
              {"first.", &EventCount::first},
              {"last.", &EventCount::last}}) {
            if (name.substr(0, prefix.size()) != prefix) continue;
            if (EventCount* count = count_named(status, name.substr(prefix.size()))) {
                (*count).*member = integer_text(value);
            }
        }
    }
}

}  // namespace detail

/// Reads a stored record back: the send, then each recipient sorted by address.
inline MessageStatus status_from_record(const std::string& key, const StatusRecord& record) {
    MessageStatus status;
    status.key = key;
    std::map<std::string_view, RecipientStatus> recipients;  // by address: sorted, each once
    for (const auto& [field, value] : record) {
        const std::size_t bar = field.rfind('|');
        if (bar == std::string::npos) continue;
        const std::string_view target = std::string_view(field).substr(0, bar);
        const std::string_view name = std::string_view(field).substr(bar + 1);
        RecipientStatus* into = &status.send;
        if (!target.empty()) {
            into = &recipients[target];
            if (into->email.empty()) into->email = std::string(target);
        }
        detail::read_status_field(*into, name, value);
    }
    status.recipients.reserve(recipients.size());
    for (auto& entry : recipients) status.recipients.push_back(std::move(entry.second));
    return status;
}

SENDGRID_BACKEND_NAMESPACE_END
