#pragma once

/// @file
/// The status rules, in one place: how a send's outcome, a queue move and each Event Webhook
/// event become `PreparedFact`s for a store (each about one target: a recipient, or the send),
/// and how a target's stored facts fold into its status (`StatusFold`, `status_from_record`).
/// Every rule is a join, so a status is a function of the set of facts seen:
///
/// - Each recipient's state is the greatest `DeliveryState` any of its facts implies
///   (`event_rules` says which state each event implies). Hence: delivered beats deferred
///   whatever the order; bounced and dropped are final; an open, a click, a spam report or an
///   unsubscribe implies delivered; a later soft bounce ("blocked") does not undo delivered.
///   Between facts implying the same state, the later one (then a hash) gives the reason.
/// - Every event is also counted per kind, with its first and last time: opens and clicks.
/// - A fact is applied once per target, identified by its content without `sg_event_id`: so
///   SendGrid's copies of an event, with the same id or a fresh one, change nothing twice.
///   (Two real opens in the same second from the same address and agent count once.)
/// - The send: the greatest of queued < sending < failed < unknown < accepted its facts imply;
///   any event of the message implies accepted (an "unknown" send that SendGrid did take).
/// - An event for a key that has no send recorded yet is kept; the send merges in when it comes.
/// - Events without the tracking argument are not about a tracked message and are left out.

#include <algorithm>
#include <array>
#include <charconv>
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
#include "sendgrid_backend/detail/json/content_hash.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
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

/// A fingerprint's text: the letter of its kind, then `value` in 16 hex digits.
inline std::string fingerprint_text(char kind, std::uint64_t value) {
    static const char digits[] = "0123456789abcdef";
    std::string text(17, kind);
    for (std::size_t i = 16; i > 0; --i, value >>= 4) text[i] = digits[value & 15];
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

/// Unix seconds as a store keeps them: within ±2^53, so negative or absurd times become 0.
inline std::int64_t storable_time(std::int64_t time) noexcept {
    return time > 0 && time < (std::int64_t{1} << 53) ? time : 0;
}

}  // namespace detail

/// The tracking key `event` carries in `tracking_arg` (its text, see WebhookEvent::custom_args);
/// empty when it carries none.
inline std::string tracking_key_of(const WebhookEvent& event, const std::string& tracking_arg) {
    auto found = event.custom_args.find(tracking_arg);
    return found == event.custom_args.end() ? std::string() : found->second;
}

namespace detail {

/// The counts a change is judged by (RecipientStatus::summary), in `Engagement` bit order.
inline constexpr const char* engagement_counts[] = {
    "open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"};

/// A fact's body: one line of seven tab-separated parts,
///
///     rank, time, tie, count, then three texts
///
/// `rank` is the `DeliveryState` the fact implies, `time` when it happened (unix seconds, 0:
/// unknown), `tie` a hash that orders facts of equal rank and time; `count` the kind of event
/// it counts ("open", ...; empty for a send or a queue move); the texts are what the state says
/// when this fact sets it: a recipient's reason, SMTP status and classification, or the send's
/// message id, HTTP status and reason. Texts are escaped (`\\`, `\t`, `\n`), so a body holds no
/// tab of its own and no line break.
inline std::string fact_body(DeliveryState state, std::int64_t time, std::uint64_t hash,
                             std::string_view count, std::string_view first,
                             std::string_view second, std::string_view third) {
    std::string body;
    body.reserve(64 + count.size() + first.size() + second.size() + third.size());
    // The numbers written in place (no string a number): a fact is made per event.
    const auto number = [&body](auto value) {
        char digits[24];  // room for any 64-bit number
        body.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
        body += '\t';
    };
    number(static_cast<int>(state));
    number(storable_time(time));
    number(hash & ((std::uint64_t{1} << 48) - 1));
    body += count;
    for (std::string_view text : {first, second, third}) {
        body += '\t';
        append_escaped(body, text);
    }
    return body;
}

/// A non-negative decimal below 2^53 (what the rules write); nullopt for anything else.
inline std::optional<std::int64_t> body_number(std::string_view text) noexcept {
    if (text.empty() || text.size() > 16) return std::nullopt;
    std::int64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    if (value >= (std::int64_t{1} << 53)) return std::nullopt;
    return value;
}

inline EventCount* count_named(RecipientStatus& status, std::string_view name) {
    for (const EventRule& rule : event_rules) {
        if (name == rule.count) return &(status.*rule.counted);
    }
    return nullptr;
}

}  // namespace detail

/// One target's status (a recipient's, or the send's), folded from its facts one at a time.
/// Every step is a join (the greatest state's fact, counts, the least and greatest times), so
/// the facts' order makes no difference; each fact is to be added once (the store's job).
class StatusFold {
  public:
    /// `target`: the recipient (lower case), or "" for the send.
    explicit StatusFold(std::string target) { status_.email = std::move(target); }

    /// Adds one fact's body; false (and nothing changed) for one the rules did not write.
    bool add(std::string_view body) {
        std::string_view parts[7];
        std::string_view rest = body;
        for (std::size_t i = 0; i < 7; ++i) {  // six tabs, no more
            const std::size_t tab = rest.find('\t');
            if ((tab == std::string_view::npos) != (i == 6)) return false;
            parts[i] = rest.substr(0, tab);
            if (tab != std::string_view::npos) rest.remove_prefix(tab + 1);
        }
        const auto rank = detail::body_number(parts[0]);
        const auto time = detail::body_number(parts[1]);
        const auto tie = detail::body_number(parts[2]);
        if (!rank || *rank > static_cast<std::int64_t>(DeliveryState::dropped) || !time || !tie) {
            return false;
        }
        EventCount* counted = nullptr;
        if (!parts[3].empty()) {
            counted = detail::count_named(status_, parts[3]);
            if (counted == nullptr) return false;
        }
        if (counted != nullptr) {
            ++counted->count;
            if (*time > 0) {
                counted->first = counted->first == 0 ? *time : std::min(counted->first, *time);
                counted->last = std::max(counted->last, *time);
            }
        }
        // The greatest (rank, time, tie) sets the state and its texts; equal ones (a hash
        // collision) go by the body, so that no order of facts decides.
        const std::array<std::int64_t, 3> order{*rank, *time, *tie};
        if (has_state_ && (order < order_ || (order == order_ && body <= state_body_))) {
            return true;
        }
        has_state_ = true;
        order_ = order;
        state_body_.assign(body);
        status_.state = static_cast<DeliveryState>(*rank);
        status_.state_time = *time;
        if (status_.email.empty()) {
            status_.message_id = detail::unescaped(parts[4]);
            const auto http = detail::body_number(parts[5]);
            status_.http_status = http ? static_cast<int>(*http % 1000) : 0;
            status_.reason = detail::unescaped(parts[6]);
        } else {
            status_.reason = detail::unescaped(parts[4]);
            status_.smtp_status = detail::unescaped(parts[5]);
            status_.classification = detail::unescaped(parts[6]);
        }
        return true;
    }

    const RecipientStatus& status() const noexcept { return status_; }
    RecipientStatus& status() noexcept { return status_; }

  private:
    RecipientStatus status_;
    bool has_state_ = false;
    std::array<std::int64_t, 3> order_{};
    std::string state_body_;
};

/// The facts `event` is: one for its recipient, and one for the send (any event says SendGrid
/// took the message), or nullopt when it is not about a tracked message (no tracking key, no
/// address, or a kind of event the rules do not know).
struct EventFacts {
    PreparedFact recipient;
    PreparedFact send;
};

namespace detail {

/// An event's own fact (for its recipient), and what its send's fact is made from: the
/// tracking key's hash and the message id (its send fact's identity, `send_fact_hash`).
struct RecipientFact {
    PreparedFact fact;
    DeliveryState implies = DeliveryState::accepted;  ///< the state the event implies
    std::uint64_t key_hash = 0;
    std::string_view message_id;  ///< into the event
};

/// The event's recipient fact, or nullopt when it is not about a tracked message (see
/// fact_from_event). `digests` (with the event's `object` there), when given, hold the event's
/// members as the reader that made it hashed them: its content is not read a second time.
inline std::optional<RecipientFact> recipient_fact(const WebhookEvent& event,
                                                   const std::string& tracking_arg,
                                                   const MemberDigests* digests = nullptr,
                                                   std::size_t object = 0) {
    std::string key = tracking_key_of(event, tracking_arg);
    const std::optional<EventRule> rule = rule_for(event);
    if (key.empty() || event.email.empty() || !rule) return std::nullopt;
    RecipientFact made;
    made.implies = rule->implies;
    made.key_hash = fnv1a(key + '\n');
    // The event as SendGrid sent it, less the id its retries may change.
    std::optional<std::uint64_t> read_before;
    if (digests != nullptr) read_before = digests->hash(object, made.key_hash, "sg_event_id");
    const std::uint64_t hash =
        read_before ? *read_before : content_hash(event.raw, made.key_hash, "sg_event_id");
    PreparedFact& recipient = made.fact;
    recipient.key = std::move(key);
    recipient.target = lower_email(event.email);
    recipient.fingerprint = fingerprint_text('e', hash);
    // A state implied by an engagement (an open, a click) has no reason of its own.
    const bool own_reason =
        rule->implies != DeliveryState::delivered || rule->type == EventType::delivered;
    recipient.body =
        fact_body(rule->implies, event.timestamp, hash, rule->count, own_reason ? event.reason : "",
                  own_reason ? event.status : "", own_reason ? event.bounce_classification : "");
    made.message_id =
        std::string_view(event.sg_message_id).substr(0, event.sg_message_id.find('.'));
    return made;
}

/// What a send fact's fingerprint is made of: equal for every event of one message.
inline std::uint64_t send_fact_hash(std::string_view message_id, std::uint64_t key_hash) {
    return fnv1a(message_id, key_hash);
}

/// The send's fact an event of message `message_id` under tracking key `key` tells: SendGrid
/// took the message.
inline PreparedFact send_fact(std::string key, std::string_view message_id,
                              std::uint64_t key_hash) {
    PreparedFact send;
    send.key = std::move(key);
    send.fingerprint = fingerprint_text('a', send_fact_hash(message_id, key_hash));
    // A recorded send (time > 0) tells it better. Ties between events naming different ids (one
    // key on two sends) go by the id's hash, not by which event came first.
    send.body = fact_body(DeliveryState::accepted, 0, fnv1a(message_id), "", message_id, "", "");
    return send;
}

}  // namespace detail

inline std::optional<EventFacts> fact_from_event(const WebhookEvent& event,
                                                 const std::string& tracking_arg) {
    std::optional<detail::RecipientFact> made = detail::recipient_fact(event, tracking_arg);
    if (!made) return std::nullopt;
    EventFacts facts;
    facts.send = detail::send_fact(made->fact.key, made->message_id, made->key_hash);
    facts.recipient = std::move(made->fact);
    return facts;
}

/// The facts a send's outcome is, for the message with tracking key `key`, at `time` (unix
/// seconds): one for the send, then one per recipient (their addresses, any form; each once),
/// in the message's order, each with the send's state. For one part of a message sent in parts,
/// `part` names it (e.g. "part 2"): its recipients' facts only (the whole message's outcome is a
/// fact of its own).
inline std::vector<PreparedFact> fact_from_outcome(const std::string& key,
                                                   const SendOutcome& outcome,
                                                   const std::vector<std::string>& recipients,
                                                   std::int64_t time,
                                                   const std::string& part = std::string()) {
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
    const std::string fingerprint = detail::fingerprint_text('s', hash);
    std::vector<PreparedFact> facts;
    facts.reserve(targets.size() + 1);
    if (part.empty()) {
        facts.push_back(
            {key, "", fingerprint,
             detail::fact_body(state, time, hash, "", outcome.message_id,
                               std::to_string(outcome.http_status), outcome.failure_reason)});
    }
    const std::string_view reason =
        state == DeliveryState::accepted ? std::string_view() : outcome.failure_reason;
    const std::string body = detail::fact_body(state, time, hash, "", reason, "", "");
    for (const std::string* recipient : targets) {
        facts.push_back({key, *recipient, fingerprint, body});
    }
    return facts;
}

/// The fact that the queue moved the message with key `key` to `state` (queued, sending, or
/// failed when cancelled), with `reason` as the send's reason when there is one ("cancelled").
inline PreparedFact fact_from_queue(const std::string& key, DeliveryState state, std::int64_t time,
                                    const std::string& reason = std::string()) {
    const std::uint64_t hash =
        detail::fnv1a(std::string("queue\n") + to_string(state), detail::fnv1a(key + '\n'));
    return {key, "", detail::fingerprint_text('q', hash),
            detail::fact_body(state, time, hash, "", "", "", reason)};
}

/// Reads a stored record back: the send, then each recipient sorted by address.
inline MessageStatus status_from_record(const std::string& key, const StatusRecord& record) {
    MessageStatus status;
    status.key = key;
    for (const auto& [target, bodies] : record) {
        StatusFold fold(target);
        for (const std::string& body : bodies) fold.add(body);
        if (target.empty()) {
            status.send = std::move(fold.status());
        } else {
            status.recipients.push_back(std::move(fold.status()));
        }
    }
    return status;
}

SENDGRID_BACKEND_NAMESPACE_END
