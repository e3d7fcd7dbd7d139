// libFuzzer harness for the Event Webhook: signature checking, key loading, parsing and the
// whole handle() path must refuse anything malformed cleanly, never crash. And a differential
// check: the events parsed (by parse_webhook_events and by handle, with and without
// de-duplication) must equal, field by field, what the parser of 0.8.0 made of the same body
// (through nlohmann's parser and tree, not the library's reader), with 0.9's text rules: a text
// field or custom arg that is not a string is its JSON text as received without spaces (held
// here to nlohmann's reading of it), `raw` is the event's own text. A body 0.8.0 refused must be
// refused with the same words.
// Input: "<signature>\n<timestamp>\n<body>"; the whole input is also tried as a public key.
// With SENDGRID_BACKEND_FUZZ_STATS set, prints how many bodies and events were compared.
#include <sendgrid_backend/detail/json/parse.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sendgrid_backend/testing/webhook_signer.hpp>

#include "../support/seen_event_ids_0_8.hpp"
#include "fuzz_input.hpp"

namespace {

namespace sg = sendgrid_backend;

// ---- The oracle: parse_webhook_events, InMemorySeenEventIds and handle()'s de-duplication as
// ---- 0.8.0 had them, unchanged but for names.
namespace oracle {

std::string json_text(const nlohmann::json& object, const char* key) {
    auto found = object.find(key);
    if (found == object.end() || found->is_null()) return "";
    if (found->is_string()) return found->get<std::string>();
    return found->dump();
}

std::optional<std::int64_t> json_integer(
    const nlohmann::json& object, const char* key,
    std::int64_t min = std::numeric_limits<std::int64_t>::min(),
    std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    auto found = object.find(key);
    if (found == object.end()) return std::nullopt;
    std::optional<std::int64_t> value;
    if (found->is_number_unsigned()) {
        const auto number = found->get<std::uint64_t>();
        if (number <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            value = static_cast<std::int64_t>(number);
        }
    } else if (found->is_number_integer()) {
        value = found->get<std::int64_t>();
    } else if (found->is_number_float()) {
        const double number = found->get<double>();
        if (number >= -9223372036854775808.0 && number < 9223372036854775808.0) {
            value = static_cast<std::int64_t>(number);
        }
    } else if (found->is_string()) {
        value = sg::detail::parse_decimal(found->get_ref<const std::string&>());
    }
    if (value && (*value < min || *value > max)) return std::nullopt;
    return value;
}

sg::EventType event_type_from(std::string_view name) {
    using sg::EventType;
    for (EventType type :
         {EventType::processed, EventType::dropped, EventType::delivered, EventType::deferred,
          EventType::bounce, EventType::open, EventType::click, EventType::spamreport,
          EventType::unsubscribe, EventType::group_unsubscribe, EventType::group_resubscribe}) {
        if (name == sg::to_string(type)) return type;
    }
    return EventType::unknown;
}

bool is_documented_event_key(std::string_view key) {
    static constexpr std::string_view keys[] = {"email",
                                                "timestamp",
                                                "event",
                                                "smtp-id",
                                                "sg_event_id",
                                                "sg_message_id",
                                                "category",
                                                "ip",
                                                "useragent",
                                                "tls",
                                                "cert_err",
                                                "reason",
                                                "status",
                                                "type",
                                                "attempt",
                                                "url",
                                                "url_offset",
                                                "asm_group_id",
                                                "marketing_campaign_id",
                                                "marketing_campaign_name",
                                                "marketing_campaign_version",
                                                "marketing_campaign_split_id",
                                                "response",
                                                "send_at",
                                                "sg_machine_open",
                                                "bounce_classification",
                                                "pool",
                                                "sg_template_id",
                                                "sg_template_name",
                                                "sg_content_type",
                                                "mc_stats",
                                                "phase_id",
                                                "singlesend_id",
                                                "singlesend_name",
                                                "template_id",
                                                "template_name",
                                                "template_version_id",
                                                "template_hash",
                                                "post_type",
                                                "newsletter",
                                                "sg_user_id",
                                                "unique_args"};
    for (auto documented : keys) {
        if (key == documented) return true;
    }
    return false;
}

/// An event as 0.8.0 read it: the typed fields, and the tree the text fields are held to.
struct Event {
    sg::WebhookEvent typed;  ///< all but the text fields, custom_args and raw
    nlohmann::json tree;
};

Event parse_event(const nlohmann::json& object) {
    Event result;
    result.tree = object;
    sg::WebhookEvent& event = result.typed;
    event.event = json_text(object, "event");
    event.type = event_type_from(event.event);
    event.timestamp = json_integer(object, "timestamp").value_or(0);
    if (auto tls = object.find("tls"); tls != object.end()) {
        if (tls->is_boolean()) event.tls = tls->get<bool>();
        if (tls->is_number()) event.tls = tls->get<double>() != 0;
    }
    if (auto attempt = json_integer(object, "attempt", 0, std::numeric_limits<int>::max())) {
        event.attempt = static_cast<int>(*attempt);
    }
    if (auto offset = object.find("url_offset"); offset != object.end() && offset->is_object()) {
        if (auto index = json_integer(*offset, "index", 0, std::numeric_limits<int>::max())) {
            event.url_offset_index = static_cast<int>(*index);
        }
    }
    event.asm_group_id = json_integer(object, "asm_group_id");
    event.marketing_campaign_id = json_integer(object, "marketing_campaign_id");
    return result;
}

std::vector<Event> parse_webhook_events(std::string_view body) {
    std::string problem;
    const nlohmann::json json = sg::detail::parse_json_text(body, &problem);
    if (json.is_discarded()) throw sg::InvalidMessage("body", problem);
    if (!json.is_array()) throw sg::InvalidMessage("body", "is not a JSON array of events");
    std::vector<Event> events;
    events.reserve(json.size());
    for (std::size_t i = 0; i < json.size(); ++i) {
        if (!json[i].is_object()) {
            throw sg::InvalidMessage("body[" + std::to_string(i) + "]", "is not an event object");
        }
        events.push_back(parse_event(json[i]));
    }
    return events;
}

using InMemorySeenEventIds = test_support::SeenEventIds08;

/// What handle() answered after its signature check: the refusal, or the new events.
struct Handled {
    int http_status = 200;
    std::string refusal_reason;
    std::vector<Event> events;
    std::size_t duplicates = 0;
};

Handled handle(std::string_view body, InMemorySeenEventIds* seen) {
    Handled result;
    try {
        for (auto& event : parse_webhook_events(body)) {
            const std::string id = json_text(event.tree, "sg_event_id");
            if (seen != nullptr && !id.empty() && !seen->first_time(id)) {
                ++result.duplicates;
                continue;
            }
            result.events.push_back(std::move(event));
        }
    } catch (const sg::InvalidMessage& invalid) {
        result.http_status = 400;
        result.refusal_reason = invalid.field() + " " + invalid.reason();
        result.events.clear();
    }
    return result;
}

}  // namespace oracle

// ---- The comparison: every field a user reads.

struct Stats {
    std::size_t bodies = 0;
    std::size_t refused = 0;      ///< bodies 0.8.0 refused (the words compared)
    std::size_t events = 0;       ///< events 0.8.0 parsed from the bodies
    std::size_t comparisons = 0;  ///< events compared field by field (four paths per event)
    ~Stats() {
        if (std::getenv("SENDGRID_BACKEND_FUZZ_STATS") != nullptr) {
            std::fprintf(stderr,
                         "webhook differential: %zu bodies (%zu refused), %zu events, "
                         "%zu event comparisons\n",
                         bodies, refused, events, comparisons);
        }
    }
};
Stats stats;

template <class T>
void same(const T& got, const T& want, const char* field) {
    if (!(got == want)) fuzz::fail(field);
}

/// Whether `text` has a space outside its strings (it is JSON: nlohmann has read it).
bool has_space_outside_strings(std::string_view text) {
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            return true;
        }
    }
    return false;
}

/// `got` holds the value `want` by 0.9's rule: a string as it is, null (in a text field) as
/// nothing, any other value as JSON text without spaces that nlohmann reads as `want` (the text
/// tells 1 from 1.0 and 0 from -0.0, which nlohmann's == does not).
void same_text(const std::string& got, const nlohmann::json* want, bool null_is_empty,
               const char* field) {
    if (want == nullptr || (null_is_empty && want->is_null())) {
        if (!got.empty()) fuzz::fail(field);
        return;
    }
    if (want->is_string()) {
        if (got != want->get_ref<const std::string&>()) fuzz::fail(field);
        return;
    }
    const nlohmann::json read = nlohmann::json::parse(got, nullptr, false);
    if (read.is_discarded() || read.dump() != want->dump() || has_space_outside_strings(got)) {
        fuzz::fail(field);
    }
}

const nlohmann::json* member(const nlohmann::json& object, const char* key) {
    const auto found = object.find(key);
    return found == object.end() ? nullptr : &*found;
}

void same_text(const std::string& got, const nlohmann::json& object, const char* key,
               const char* field) {
    same_text(got, member(object, key), true, field);
}

void same_event(const sg::WebhookEvent& got, const oracle::Event& expected, std::string_view body) {
    const sg::WebhookEvent& want = expected.typed;
    const nlohmann::json& tree = expected.tree;
    same(got.type, want.type, "WebhookEvent::type differs from 0.8.0's");
    same_text(got.event, tree, "event", "WebhookEvent::event differs from 0.8.0's");
    same_text(got.email, tree, "email", "WebhookEvent::email differs from 0.8.0's");
    same(got.timestamp, want.timestamp, "WebhookEvent::timestamp differs from 0.8.0's");
    same_text(got.smtp_id, tree, "smtp-id", "WebhookEvent::smtp_id differs from 0.8.0's");
    same_text(got.sg_event_id, tree, "sg_event_id",
              "WebhookEvent::sg_event_id differs from 0.8.0's");
    same_text(got.sg_message_id, tree, "sg_message_id",
              "WebhookEvent::sg_message_id differs from 0.8.0's");
    // "category": a string, or an array of strings or else their text (null is "null").
    const nlohmann::json* category = member(tree, "category");
    if (category != nullptr && category->is_array()) {
        same(got.categories.size(), category->size(), "WebhookEvent::categories differs");
        for (std::size_t i = 0; i < category->size(); ++i) {
            same_text(got.categories[i], &(*category)[i], false,
                      "WebhookEvent::categories differs from 0.8.0's");
        }
    } else if (category != nullptr && category->is_string()) {
        same(got.categories, std::vector<std::string>{category->get<std::string>()},
             "WebhookEvent::categories differs from 0.8.0's");
    } else {
        same(got.categories.empty(), true, "WebhookEvent::categories differs from 0.8.0's");
    }
    same_text(got.ip, tree, "ip", "WebhookEvent::ip differs from 0.8.0's");
    same_text(got.useragent, tree, "useragent", "WebhookEvent::useragent differs from 0.8.0's");
    same(got.tls, want.tls, "WebhookEvent::tls differs from 0.8.0's");
    same_text(got.reason, tree, "reason", "WebhookEvent::reason differs from 0.8.0's");
    same_text(got.status, tree, "status", "WebhookEvent::status differs from 0.8.0's");
    same_text(got.bounce_type, tree, "type", "WebhookEvent::bounce_type differs from 0.8.0's");
    same(got.attempt, want.attempt, "WebhookEvent::attempt differs from 0.8.0's");
    same_text(got.url, tree, "url", "WebhookEvent::url differs from 0.8.0's");
    same(got.url_offset_index, want.url_offset_index,
         "WebhookEvent::url_offset_index differs from 0.8.0's");
    const nlohmann::json* offset = member(tree, "url_offset");
    same_text(got.url_offset_type,
              offset != nullptr && offset->is_object() ? member(*offset, "type") : nullptr, true,
              "WebhookEvent::url_offset_type differs from 0.8.0's");
    same(got.asm_group_id, want.asm_group_id, "WebhookEvent::asm_group_id differs from 0.8.0's");
    same(got.marketing_campaign_id, want.marketing_campaign_id,
         "WebhookEvent::marketing_campaign_id differs from 0.8.0's");
    same_text(got.marketing_campaign_name, tree, "marketing_campaign_name",
              "WebhookEvent::marketing_campaign_name differs from 0.8.0's");
    same_text(got.marketing_campaign_version, tree, "marketing_campaign_version",
              "WebhookEvent::marketing_campaign_version differs from 0.8.0's");
    same_text(got.marketing_campaign_split_id, tree, "marketing_campaign_split_id",
              "WebhookEvent::marketing_campaign_split_id differs from 0.8.0's");
    same_text(got.bounce_classification, tree, "bounce_classification",
              "WebhookEvent::bounce_classification differs from 0.8.0's");
    // custom_args: every undocumented key, its value by the text rule (null is "null" here).
    std::size_t custom = 0;
    for (const auto& [key, value] : tree.items()) {
        if (oracle::is_documented_event_key(key)) continue;
        ++custom;
        const auto found = got.custom_args.find(key);
        if (found == got.custom_args.end()) fuzz::fail("WebhookEvent::custom_args lacks a key");
        same_text(found->second, &value, false, "WebhookEvent::custom_args differs from 0.8.0's");
    }
    same(got.custom_args.size(), custom, "WebhookEvent::custom_args has other keys than 0.8.0's");
    // raw: the event's own text, from its { to its }, which nlohmann reads as the event.
    if (got.raw.empty() || got.raw.front() != '{' || got.raw.back() != '}' ||
        body.find(got.raw) == std::string_view::npos) {
        fuzz::fail("WebhookEvent::raw is not an object's text from the body");
    }
    const nlohmann::json raw = nlohmann::json::parse(got.raw, nullptr, false);
    if (raw.is_discarded() || raw.dump() != tree.dump()) {
        fuzz::fail("WebhookEvent::raw is not the event 0.8.0 read");
    }
    if (got.json().dump() != tree.dump()) fuzz::fail("WebhookEvent::json() differs from raw");
    ++stats.comparisons;
}

void same_events(const std::vector<sg::WebhookEvent>& got, const std::vector<oracle::Event>& want,
                 std::string_view body) {
    if (got.size() != want.size()) fuzz::fail("not as many events as 0.8.0 parsed");
    for (std::size_t i = 0; i < got.size(); ++i) same_event(got[i], want[i], body);
}

void same_handled(const sg::WebhookResult& got, const oracle::Handled& want,
                  std::string_view body) {
    same(got.http_status, want.http_status, "handle(): the status differs from 0.8.0's");
    same(got.refusal_reason, want.refusal_reason, "handle(): the reason differs from 0.8.0's");
    same(got.refusal == sg::WebhookRefusal::malformed_body, want.http_status == 400,
         "handle(): the refusal differs from 0.8.0's");
    same(got.duplicates, want.duplicates, "handle(): duplicates differ from 0.8.0's");
    same_events(got.events, want.events, body);
}

/// The digests the reader makes of each event's members (EventWebhook with statuses) must hash
/// as the event's text does (content_hash): a fact's fingerprint is the same either way.
void same_digests(std::string_view body) {
    sg::detail::WebhookBodyReader reader(body);
    std::vector<sg::WebhookEvent> events;
    sg::detail::MemberDigests digests;
    reader.read(&events, static_cast<std::size_t>(-1), &digests);
    same(digests.size(), events.size(), "MemberDigests: not an object per event");
    for (std::size_t i = 0; i < events.size(); ++i) {
        for (const std::string_view skip : {std::string_view(), std::string_view("sg_event_id")}) {
            const std::optional<std::uint64_t> got = digests.hash(i, 7, skip);
            if (!got) fuzz::fail("MemberDigests: an event's members were not all hashed");
            same(*got, sg::detail::content_hash(events[i].raw, 7, skip),
                 "MemberDigests: an event hashes otherwise than its text");
        }
    }
}

/// parse_webhook_events and handle() (without and with de-duplication, and with statuses: the
/// body checked whole, then read in parts) against the oracle.
void compare_with_oracle(const sg::EventWebhook& unsigned_webhook,
                         const sg::EventWebhook& with_statuses, std::string_view body) {
    ++stats.bodies;
    std::optional<std::vector<oracle::Event>> want;
    std::string want_refusal;
    try {
        want = oracle::parse_webhook_events(body);
        stats.events += want->size();
    } catch (const sg::InvalidMessage& invalid) {
        want_refusal = invalid.field() + " " + invalid.reason();
        ++stats.refused;
    }
    try {
        const auto got = sg::parse_webhook_events(body);
        if (!want) fuzz::fail("parse_webhook_events took a body 0.8.0 refused");
        same_events(got, *want, body);
        same_digests(body);
    } catch (const sg::InvalidMessage& invalid) {
        if (want) fuzz::fail("parse_webhook_events refused a body 0.8.0 took");
        same(invalid.field() + " " + invalid.reason(), want_refusal,
             "parse_webhook_events refused with other words than 0.8.0");
    }

    same_handled(unsigned_webhook.handle({}, body), oracle::handle(body, nullptr), body);
    try {
        const std::size_t count = sg::detail::WebhookBodyReader::check(body);
        if (!want) fuzz::fail("WebhookBodyReader::check took a body 0.8.0 refused");
        same(count, want->size(), "WebhookBodyReader::check counted other events than 0.8.0");
    } catch (const sg::InvalidMessage& invalid) {
        if (want) fuzz::fail("WebhookBodyReader::check refused a body 0.8.0 took");
        same(invalid.field() + " " + invalid.reason(), want_refusal,
             "WebhookBodyReader::check refused with other words than 0.8.0");
    }
    same_handled(with_statuses.handle({}, body), oracle::handle(body, nullptr), body);

    // De-duplication: the same body twice into a small set (so that eviction happens too). An
    // id that is not a string is its text as received, which 0.8.0's tree cannot tell (ids of
    // one value written two ways are two ids now): such bodies skip this comparison.
    if (want) {
        for (const auto& event : *want) {
            const nlohmann::json* id = member(event.tree, "sg_event_id");
            if (id != nullptr && !id->is_string() && !id->is_null()) return;
        }
    }
    constexpr std::size_t capacity = 4;
    sg::WebhookOptions options;
    options.allow_unsigned = true;
    options.seen = std::make_shared<sg::InMemorySeenEventIds>(capacity);
    const sg::EventWebhook deduplicating(options);
    oracle::InMemorySeenEventIds seen(capacity);
    for (int round = 0; round < 2; ++round) {
        same_handled(deduplicating.handle({}, body), oracle::handle(body, &seen), body);
    }
}

struct Fixture {
    sg::testing::WebhookSigner signer;
    sg::EventWebhookVerifier verifier{signer.public_key_base64()};
    sg::EventWebhook checked{options(true)};
    sg::EventWebhook unsigned_{options(false)};
    sg::EventWebhook with_statuses{statuses_options()};

    sg::WebhookOptions statuses_options() const {
        sg::WebhookOptions result = options(false);
        result.statuses = std::make_shared<sg::StatusTracker>();
        return result;
    }

    sg::WebhookOptions options(bool with_key) const {
        sg::WebhookOptions result;
        if (with_key) {
            result.public_key = signer.public_key_base64();
        } else {
            result.allow_unsigned = true;
        }
        result.tolerance.reset();
        result.seen.reset();  // every input on its own
        return result;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Fixture fixture;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto first = input.find('\n');
    const auto second = first == std::string_view::npos ? first : input.find('\n', first + 1);
    const std::string_view signature = input.substr(0, first);
    const std::string_view timestamp = first == std::string_view::npos
                                           ? std::string_view()
                                           : input.substr(first + 1, second - first - 1);
    const std::string_view body =
        second == std::string_view::npos ? input : input.substr(second + 1);

    (void)fixture.verifier.check(body, signature, timestamp);
    try {
        sg::EventWebhookVerifier key(input);
        (void)key.verify(body, signature, timestamp);
    } catch (const sg::ImproperlyConfigured&) {
    }
    const sg::HttpHeaders headers = {
        {std::string(sg::webhook_signature_header), std::string(signature)},
        {std::string(sg::webhook_timestamp_header), std::string(timestamp)}};
    (void)fixture.checked.handle(headers, body);
    compare_with_oracle(fixture.unsigned_, fixture.with_statuses,
                        body);  // reaches the parser with any body
    return 0;
}
