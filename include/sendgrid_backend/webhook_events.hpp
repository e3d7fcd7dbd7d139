#pragma once

/// @file
/// The Event Webhook's events: what SendGrid POSTs about each message after it was accepted
/// (processed, delivered, bounce, open, ...), parsed into typed `WebhookEvent`s, with
/// de-duplication by `sg_event_id` and `belongs_to` for matching events to sent messages.
/// Needs nlohmann/json only; verifying SendGrid's signature is webhook.hpp's job (OpenSSL).
///
/// @code
/// for (const auto& event : sendgrid_backend::parse_webhook_events(body)) {
///     if (event.type == sendgrid_backend::EventType::bounce) mark_bounced(event.email);
/// }
/// @endcode

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/json/content_hash.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"
#include "sendgrid_backend/detail/json/event_keys.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"
#include "sendgrid_backend/detail/json/scanned_values.hpp"
#include "sendgrid_backend/detail/json/tree.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/signals.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// The kinds of event SendGrid reports; `unknown` keeps any other kind (never dropped).
enum class EventType {
    processed,
    dropped,
    delivered,
    deferred,
    bounce,
    open,
    click,
    spamreport,
    unsubscribe,
    group_unsubscribe,
    group_resubscribe,
    unknown,
};

/// The event name SendGrid uses, e.g. "group_unsubscribe"; "unknown" for unknown.
constexpr const char* to_string(EventType type) noexcept {
    switch (type) {
        case EventType::processed:
            return "processed";
        case EventType::dropped:
            return "dropped";
        case EventType::delivered:
            return "delivered";
        case EventType::deferred:
            return "deferred";
        case EventType::bounce:
            return "bounce";
        case EventType::open:
            return "open";
        case EventType::click:
            return "click";
        case EventType::spamreport:
            return "spamreport";
        case EventType::unsubscribe:
            return "unsubscribe";
        case EventType::group_unsubscribe:
            return "group_unsubscribe";
        case EventType::group_resubscribe:
            return "group_resubscribe";
        case EventType::unknown:
            return "unknown";
    }
    return "unknown";
}

/// One event of the POSTed array. Fields SendGrid did not send are empty / unset.
struct WebhookEvent {
    EventType type = EventType::unknown;
    std::string event;  ///< the name as sent, also for unknown types
    std::string email;
    std::int64_t timestamp = 0;
    std::string smtp_id;  ///< "smtp-id"
    std::string sg_event_id;
    std::string sg_message_id;
    std::vector<std::string> categories;  ///< "category", a string or an array
    std::string ip;
    std::string useragent;
    std::optional<bool> tls;
    std::string reason;          ///< dropped, bounce, deferred
    std::string status;          ///< bounce: the SMTP status, e.g. "5.1.1"
    std::string bounce_type;     ///< bounce: "bounce" or "blocked" (SendGrid's "type")
    std::optional<int> attempt;  ///< deferred
    std::string url;             ///< click
    std::optional<int> url_offset_index;
    std::string url_offset_type;
    std::optional<std::int64_t> asm_group_id;  ///< group_unsubscribe, group_resubscribe
    std::optional<std::int64_t> marketing_campaign_id;
    std::string marketing_campaign_name;
    std::string marketing_campaign_version;
    std::string marketing_campaign_split_id;
    std::string bounce_classification;  ///< bounce, blocked: e.g. "Invalid Address"
    /// Top-level keys SendGrid does not define: the custom_args sent with the message. Each
    /// value as text: a string decoded, any other value its JSON text without spaces, e.g.
    /// `12`, `null` or `{"a":[1,2]}`. The same rule gives a text field above a value that is
    /// not a string, but null there is "".
    std::map<std::string, std::string> custom_args;
    /// The event's JSON text exactly as received, from its `{` to its `}`.
    std::string raw;

    /// `raw` parsed: the event as a tree. Parses on every call.
    /// @throws InvalidWebhookBody (field "raw") when `raw` is not JSON (an event built by hand).
    nlohmann::json json() const {
        std::string problem;
        nlohmann::json tree = detail::read_json_text(raw, &problem);
        if (tree.is_discarded()) throw InvalidWebhookBody("raw", problem);
        return tree;
    }
};

/// Whether `event` is about the message SendGrid accepted with X-Message-Id `message_id`:
/// SendGrid's sg_message_id is that id followed by "." and a suffix of its own.
inline bool belongs_to(const WebhookEvent& event, std::string_view message_id) noexcept {
    const std::string_view id = event.sg_message_id;
    if (message_id.empty() || id.size() < message_id.size()) return false;
    return id.substr(0, message_id.size()) == message_id &&
           (id.size() == message_id.size() || id[message_id.size()] == '.');
}

/// The same for a message sent with SendgridBackend (its recorded outcome.message_id).
inline bool belongs_to(const WebhookEvent& event, const EmailMessage& message) noexcept {
    return belongs_to(event, message.outcome.message_id);
}

namespace detail {

inline EventType event_type_from(std::string_view name) noexcept {
    for (EventType type :
         {EventType::processed, EventType::dropped, EventType::delivered, EventType::deferred,
          EventType::bounce, EventType::open, EventType::click, EventType::spamreport,
          EventType::unsubscribe, EventType::group_unsubscribe, EventType::group_resubscribe}) {
        if (name == to_string(type)) return type;
    }
    return EventType::unknown;
}

/// "category": a string, or an array whose items are strings or else their JSON text (null is
/// "null" here, unlike in a text field); anything else is no category.
inline bool read_categories(JsonScanner& scan, std::vector<std::string>& categories) {
    categories.clear();  // of a repeated key the last value counts
    const char first = scan.peek();
    if (first == '"') return scan.string(categories.emplace_back());
    if (first != '[') return scan.value();
    scan.take('[');
    if (scan.take(']')) return true;
    for (;;) {
        if (scan.peek() == '"') {
            if (!scan.string(categories.emplace_back())) return false;
        } else {
            std::string_view raw;
            if (!scan.value(&raw)) return false;
            categories.push_back(compact_json(raw));
        }
        if (scan.take(']')) return true;
        if (!scan.take(',')) return false;
    }
}

/// "url_offset": an object with "index" and "type"; anything else leaves both unset.
inline bool read_url_offset(JsonScanner& scan, WebhookEvent& event, std::string& key) {
    event.url_offset_index.reset();
    event.url_offset_type.clear();
    if (scan.peek() != '{') return scan.value();
    scan.take('{');
    if (scan.take('}')) return true;
    for (;;) {
        if (!scan.string(key) || !scan.take(':')) return false;
        bool ok = true;
        if (key == "index") {
            ok = read_count(scan, event.url_offset_index);
        } else if (key == "type") {
            ok = read_text(scan, event.url_offset_type);
        } else {
            ok = scan.value();
        }
        if (!ok) return false;
        if (scan.take('}')) return true;
        if (!scan.take(',')) return false;
    }
}

/// "tls": a boolean, or a number (other than 0: true); anything else leaves it unset.
inline bool read_tls(JsonScanner& scan, std::optional<bool>& tls) {
    tls.reset();
    const char first = scan.peek();
    if (first == 't' || first == 'f') {
        tls = first == 't';
        return scan.value();
    }
    if (first == '-' || (first >= '0' && first <= '9')) {
        std::string_view token;
        if (!scan.number(token)) return false;
        tls = is_nonzero_number(token);
        return true;
    }
    return scan.value();
}

/// Reads the value of the top-level key `key` into its field. Of a repeated key, the last
/// value counts, as each read replaces what an earlier one left.
inline bool read_event_member(JsonScanner& scan, WebhookEvent& event, std::string& key) {
    std::optional<std::int64_t> number;
    switch (event_key(key)) {
        case EventKey::custom:
            return read_text(scan, event.custom_args[key], /*null_is_empty=*/false);
        case EventKey::documented:
            return scan.value();
        case EventKey::email:
            return read_text(scan, event.email);
        case EventKey::timestamp:
            if (!read_integer(scan, number)) return false;
            event.timestamp = number.value_or(0);
            return true;
        case EventKey::event:
            return read_text(scan, event.event);
        case EventKey::smtp_id:
            return read_text(scan, event.smtp_id);
        case EventKey::sg_event_id:
            return read_text(scan, event.sg_event_id);
        case EventKey::sg_message_id:
            return read_text(scan, event.sg_message_id);
        case EventKey::category:
            return read_categories(scan, event.categories);
        case EventKey::ip:
            return read_text(scan, event.ip);
        case EventKey::useragent:
            return read_text(scan, event.useragent);
        case EventKey::tls:
            return read_tls(scan, event.tls);
        case EventKey::reason:
            return read_text(scan, event.reason);
        case EventKey::status:
            return read_text(scan, event.status);
        case EventKey::type:
            return read_text(scan, event.bounce_type);
        case EventKey::attempt:
            return read_count(scan, event.attempt);
        case EventKey::url:
            return read_text(scan, event.url);
        case EventKey::url_offset:
            return read_url_offset(scan, event, key);
        case EventKey::asm_group_id:
            return read_integer(scan, event.asm_group_id);
        case EventKey::marketing_campaign_id:
            return read_integer(scan, event.marketing_campaign_id);
        case EventKey::marketing_campaign_name:
            return read_text(scan, event.marketing_campaign_name);
        case EventKey::marketing_campaign_version:
            return read_text(scan, event.marketing_campaign_version);
        case EventKey::marketing_campaign_split_id:
            return read_text(scan, event.marketing_campaign_split_id);
        case EventKey::bounce_classification:
            return read_text(scan, event.bounce_classification);
    }
    return scan.value();
}

/// Reads one event object (the scanner at its `{`) into `event`, keeping its text as `raw`.
/// `key` is scratch space, reused from event to event. With `digests`, each member's value is
/// hashed there too (MemberDigests: what a status fact's fingerprint is made of). False when
/// the text is not JSON.
inline bool read_event(JsonScanner& scan, std::string_view text, WebhookEvent& event,
                       std::string& key, MemberDigests* digests = nullptr) {
    scan.peek();
    const std::size_t start = scan.position();
    if (!scan.take('{')) return false;
    if (digests != nullptr) digests->begin_object();
    if (!scan.take('}')) {
        for (;;) {
            scan.peek();
            const std::size_t key_start = scan.position();
            if (!scan.string(key)) return false;
            if (digests != nullptr) {
                digests->add_key(text.substr(key_start, scan.position() - key_start), key);
            }
            if (!scan.take(':')) return false;
            scan.peek();
            const std::size_t value_start = scan.position();
            // (`key` may be used for keys inside the value.)
            if (!read_event_member(scan, event, key)) return false;
            if (digests != nullptr) {
                digests->add_value(text.substr(value_start, scan.position() - value_start));
            }
            if (scan.take('}')) break;
            if (!scan.take(',')) return false;
        }
    }
    if (digests != nullptr) digests->end_object();
    event.type = event_type_from(event.event);
    event.raw = text.substr(start, scan.position() - start);
    return true;
}

}  // namespace detail

/// Remembers which `sg_event_id`s were seen, so SendGrid's retries (for up to 24 hours) are not
/// handled twice. Implement it over Redis or a database table to share it between processes.
class SeenEventIds {
  public:
    virtual ~SeenEventIds() = default;
    /// Records `id`; returns true the first time an id is seen. Must be thread-safe.
    virtual bool first_time(std::string_view id) = 0;
};

/// An in-process SeenEventIds holding the most recent `capacity` ids.
class InMemorySeenEventIds : public SeenEventIds {
  public:
    explicit InMemorySeenEventIds(std::size_t capacity = 100'000) : capacity_(capacity) {}

    bool first_time(std::string_view id) override {
        std::lock_guard<std::mutex> lock(mutex_);
        if (capacity_ == 0) return true;
        const std::uint64_t hash = std::hash<std::string_view>()(id);
        if (find(id, hash) != none) return false;
        // What may fail to allocate comes before any change: a failure leaves the set whole.
        if (ids_.size() < capacity_) {
            std::string copy(id);
            const std::size_t room =
                std::min(capacity_, std::max<std::size_t>(16, 2 * ids_.size()));
            if (ids_.size() == ids_.capacity()) ids_.reserve(room);
            if (hashes_.size() == hashes_.capacity()) hashes_.reserve(room);
            if (2 * (ids_.size() + 1) > slots_.size()) grow();
            ids_.push_back(std::move(copy));
            hashes_.push_back(hash);
            place(hash, ids_.size() - 1);
            return true;
        }
        // Full: the oldest id makes room. Its string is reused, so that a receiver past its first
        // `capacity` events allocates nothing here (for ids no longer than the ones it replaces).
        ids_[oldest_].reserve(id.size());
        erase(oldest_);
        ids_[oldest_].assign(id.data(), id.size());
        hashes_[oldest_] = hash;
        place(hash, oldest_);
        oldest_ = (oldest_ + 1) % capacity_;
        return true;
    }

  private:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    /// A slot of the open-addressing table: an id's hash and its place in ids_ plus one (0: the
    /// slot is empty). Linear probing keeps a lookup of a new id (most of them) to one or two
    /// cache lines, where a node-based set follows pointers to its nodes and their strings.
    struct Slot {
        std::uint64_t hash = 0;
        std::size_t index_plus_one = 0;
    };

    /// Fibonacci hashing: the slot from the product's top bits, whatever the quality of the
    /// hash's low ones.
    SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE std::size_t home(std::uint64_t hash) const noexcept {
        return static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ull) >> (64 - bits_));
    }
    std::size_t next(std::size_t slot) const noexcept { return (slot + 1) & (slots_.size() - 1); }

    std::size_t find(std::string_view id, std::uint64_t hash) const noexcept {
        if (slots_.empty()) return none;
        for (std::size_t at = home(hash); slots_[at].index_plus_one != 0; at = next(at)) {
            const std::size_t index = slots_[at].index_plus_one - 1;
            if (slots_[at].hash == hash && ids_[index] == id) return index;
        }
        return none;
    }

    void place(std::uint64_t hash, std::size_t index) noexcept {
        std::size_t at = home(hash);
        while (slots_[at].index_plus_one != 0) at = next(at);
        slots_[at] = Slot{hash, index + 1};
    }

    /// Takes ids_[index] out of the table, moving back the entries after it that would no
    /// longer be found past the emptied slot (no tombstones: lookups stay short).
    void erase(std::size_t index) noexcept {
        std::size_t hole = home(hashes_[index]);
        while (slots_[hole].index_plus_one != index + 1) hole = next(hole);
        for (std::size_t at = next(hole); slots_[at].index_plus_one != 0; at = next(at)) {
            const std::size_t wanted = home(slots_[at].hash);
            // It stays when its home lies cyclically after the hole and up to where it is.
            const bool stays =
                hole <= at ? (hole < wanted && wanted <= at) : (hole < wanted || wanted <= at);
            if (stays) continue;
            slots_[hole] = slots_[at];
            hole = at;
        }
        slots_[hole] = Slot{};
    }

    /// Doubles the table (at most half full), placing every id again.
    void grow() {
        const unsigned bits = slots_.empty() ? 4 : bits_ + 1;
        std::vector<Slot> bigger(std::size_t{1} << bits);
        slots_.swap(bigger);
        bits_ = bits;
        for (std::size_t i = 0; i < ids_.size(); ++i) place(hashes_[i], i);
    }

    std::size_t capacity_;
    std::mutex mutex_;
    std::vector<std::string> ids_;       ///< the ids, in the order they came until full
    std::vector<std::uint64_t> hashes_;  ///< each id's hash
    std::size_t oldest_ = 0;             ///< once full, the place the next new id takes
    std::vector<Slot> slots_;            ///< ids_ by hash: a power of two in size, or empty
    unsigned bits_ = 0;                  ///< slots_.size() is 2^bits_
};

namespace detail {

/// A POSTed body's events read a few at a time, so that EventWebhook can apply one part's
/// statuses while it reads the next. `check` a body first: reading it cannot fail then, and
/// nothing is applied from a body that will be refused.
class WebhookBodyReader {
  public:
    /// A reader of `body` checked whole first, as parse_webhook_events checks it (the same
    /// InvalidWebhookBody for the same body), its events not read yet; `count` receives their
    /// number. Reading it cannot fail then.
    static WebhookBodyReader checked(std::string_view body, std::size_t& count) {
        try {
            // The elements' nesting bounded by the scanner (one level below the limit, the array
            // being one): the text's own pass over it only to word a refusal.
            WebhookBodyReader reader(body, max_json_text_depth - 1);
            reader.open();
            count = reader.check_rest();
            return reader;
        } catch (const InvalidWebhookBody&) {
            if (text_nests_deeper(body, max_json_text_depth)) throw too_deep();
            throw;
        }
    }

    /// The number of events in `body`, checked as `checked` checks it.
    static std::size_t check(std::string_view body) {
        std::size_t count = 0;
        checked(body, count);
        return count;
    }

    /// Opens the array. @throws InvalidWebhookBody as parse_webhook_events, when `body` nests
    /// too deep or is not a JSON array.
    explicit WebhookBodyReader(std::string_view body)
        : WebhookBodyReader(body, max_json_text_depth) {
        if (text_nests_deeper(body, max_json_text_depth)) throw too_deep();
        open();
    }

    /// Reads up to `count` more events, appending them to `events` (null: only checked);
    /// returns how many. With `digests`, each event's members are hashed there too, an object
    /// per event read. Past an element that is not an object the rest is only checked as JSON,
    /// for `finish` to name it. @throws InvalidWebhookBody (field "body") for text that is not
    /// JSON.
    std::size_t read(std::vector<WebhookEvent>* events, std::size_t count,
                     MemberDigests* digests = nullptr) {
        std::size_t read = 0;
        while (!done_ && read < count) {
            if (!not_an_object_ && scan_.peek() == '{') {
                const bool ok = events == nullptr ? scan_.value()
                                                  : read_event(scan_, body_, events->emplace_back(),
                                                               key_, digests);
                if (!ok) throw not_json();
                ++read;
            } else {
                if (!not_an_object_) not_an_object_ = elements_;
                if (!scan_.value()) throw not_json();
            }
            ++elements_;
            if (scan_.take(']')) {
                done_ = true;
            } else if (!scan_.take(',')) {
                throw not_json();
            }
        }
        return read;
    }

    /// The number of events not read yet, the rest of the body checked as reading it all and
    /// `finish` would check it; the reading then goes on from where it was.
    /// @throws InvalidWebhookBody as `read` and `finish`.
    std::size_t check_rest() const {
        WebhookBodyReader ahead = *this;  // reads on, this one stays where it is
        const std::size_t count = ahead.read(nullptr, static_cast<std::size_t>(-1));
        ahead.finish();
        return count;
    }

    /// After the last read: @throws InvalidWebhookBody for text after the array ("body") or an
    /// element that is not an object (`body[i]`, the first).
    void finish() {
        if (!done_ || !scan_.at_end()) throw not_json();
        if (not_an_object_) {
            throw InvalidWebhookBody("body[" + std::to_string(*not_an_object_) + "]",
                                     "is not an event object");
        }
    }

    /// Room for most bodies' events at once, from the body's size alone (SendGrid's events
    /// take a few hundred bytes each; moving events already read, each a few dozen strings, as
    /// a vector grows cost more).
    std::size_t likely_events() const noexcept {
        return std::min<std::size_t>(body_.size() / 256 + 1, 10'000);
    }

  private:
    /// Not opened yet; values inside an element nest at most `element_depth` deep.
    WebhookBodyReader(std::string_view body, int element_depth)
        : body_(body.substr(0, 3) == "\xEF\xBB\xBF" ? body.substr(3) : body),  // as nlohmann
          scan_(body_, element_depth) {}

    void open() {
        if (scan_.peek() != '[') {
            // Whether JSON at all decides the words.
            JsonScanner whole(body_, max_json_text_depth);
            if (!whole.value() || !whole.at_end()) throw not_json();
            throw InvalidWebhookBody("body", "is not a JSON array of events");
        }
        scan_.take('[');
        done_ = scan_.take(']');
    }

    static InvalidWebhookBody not_json() { return InvalidWebhookBody("body", detail::not_json); }
    static InvalidWebhookBody too_deep() {
        return InvalidWebhookBody("body", too_deep_json(max_json_text_depth));
    }

    std::string_view body_;
    JsonScanner scan_;
    std::string key_;  // scratch, reused from event to event
    std::size_t elements_ = 0;
    std::optional<std::size_t> not_an_object_;  // the first; the rest is still checked for JSON
    bool done_ = false;                         // the array's `]` was read
};

}  // namespace detail

/// Parses the POSTed JSON array into events (no signature check), in one pass over the text:
/// no tree is built.
/// @throws InvalidWebhookBody (field "body" or `body[i]`) when the body is not a JSON array of
/// objects.
inline std::vector<WebhookEvent> parse_webhook_events(std::string_view body) {
    detail::WebhookBodyReader reader(body);
    std::vector<WebhookEvent> events;
    events.reserve(reader.likely_events());
    reader.read(&events, static_cast<std::size_t>(-1));
    reader.finish();
    return events;
}

/// Why a request was not accepted, or `none`.
enum class WebhookRefusal {
    none,
    body_too_large,
    missing_signature,
    bad_timestamp,
    stale_timestamp,   ///< older than the tolerance: a replay, or a very slow delivery
    future_timestamp,  ///< newer than the tolerance: a wrong clock somewhere
    bad_signature_encoding,
    signature_mismatch,
    malformed_body,
    /// The status store (`WebhookOptions::statuses`) failed: answered 503, so that SendGrid
    /// sends the batch again, and nothing of it was emitted. As a rule nothing was applied
    /// either; but when the connection to a shared store broke after the store applied the
    /// batch and stayed broken through the store's tries (RedisStatusStore::apply), the facts
    /// come back as applied before, and their status changes are not signalled.
    status_store_failed,
};

/// A short name for a WebhookRefusal, e.g. "stale_timestamp"; "none" for none.
constexpr const char* to_string(WebhookRefusal refusal) noexcept {
    switch (refusal) {
        case WebhookRefusal::none:
            return "none";
        case WebhookRefusal::body_too_large:
            return "body_too_large";
        case WebhookRefusal::missing_signature:
            return "missing_signature";
        case WebhookRefusal::bad_timestamp:
            return "bad_timestamp";
        case WebhookRefusal::stale_timestamp:
            return "stale_timestamp";
        case WebhookRefusal::future_timestamp:
            return "future_timestamp";
        case WebhookRefusal::bad_signature_encoding:
            return "bad_signature_encoding";
        case WebhookRefusal::signature_mismatch:
            return "signature_mismatch";
        case WebhookRefusal::malformed_body:
            return "malformed_body";
        case WebhookRefusal::status_store_failed:
            return "status_store_failed";
    }
    return "none";
}

/// What to answer and what was received.
struct WebhookResult {
    int http_status = 200;  ///< 200, or 400 / 401 / 413 / 503 when refused
    WebhookRefusal refusal = WebhookRefusal::none;
    std::string refusal_reason;        ///< one line, empty when accepted
    std::vector<WebhookEvent> events;  ///< the new events, in the order received
    std::size_t duplicates = 0;        ///< events dropped because their sg_event_id was seen before
    /// Events that changed a tracked message's record (`WebhookOptions::statuses`): new facts,
    /// copies and untracked events left out.
    std::size_t statuses_applied = 0;
    /// The signature was checked and matched (false when accepted with `allow_unsigned`).
    bool verified = false;

    bool accepted() const noexcept { return refusal == WebhookRefusal::none; }
};

/// Sent once by every `EventWebhook::handle` call (webhook.hpp), accepted or refused, after the
/// request's events were sent on `sendgrid_event_received`, on the same thread: what a request
/// counter or an access log needs. A handler that throws is reported to
/// `WebhookOptions::on_result_handler_error` (default: stderr); the answer stands.
inline BasicSignal<void(const EventWebhook&, const WebhookResult&)> sendgrid_webhook_handled;

/// Sent by `EventWebhook::handle` (webhook.hpp) for each new event of a verified request, on the
/// thread that handles the request. Declared here, with the events, so that programs that only
/// send mail do not instantiate it.
inline BasicSignal<void(const EventWebhook&, const WebhookEvent&)> sendgrid_event_received;

SENDGRID_BACKEND_NAMESPACE_END
