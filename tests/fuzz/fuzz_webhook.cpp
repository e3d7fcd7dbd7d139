// libFuzzer harness for the Event Webhook: signature checking, key loading, parsing and the
// whole handle() path must refuse anything malformed cleanly, never crash. And a differential
// check: the events parsed (by parse_webhook_events and by handle, with and without
// de-duplication) must equal, field by field, what the parser of 0.8.0 made of the same body,
// and a body it refused must be refused with the same words. That parser, copied below as the
// oracle, built each event from copies of the JSON tree; the library's now moves the tree.
// Input: "<signature>\n<timestamp>\n<body>"; the whole input is also tried as a public key.
// With SENDGRID_BACKEND_FUZZ_STATS set, prints how many bodies and events were compared.
#include <sendgrid_backend/detail/json/parse.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
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

sg::WebhookEvent parse_event(const nlohmann::json& object) {
    sg::WebhookEvent event;
    event.raw = object;
    event.event = json_text(object, "event");
    event.type = event_type_from(event.event);
    event.email = json_text(object, "email");
    event.timestamp = json_integer(object, "timestamp").value_or(0);
    event.smtp_id = json_text(object, "smtp-id");
    event.sg_event_id = json_text(object, "sg_event_id");
    event.sg_message_id = json_text(object, "sg_message_id");
    if (auto category = object.find("category"); category != object.end()) {
        if (category->is_array()) {
            for (const auto& item : *category) {
                event.categories.push_back(item.is_string() ? item.get<std::string>()
                                                            : item.dump());
            }
        } else if (category->is_string()) {
            event.categories.push_back(category->get<std::string>());
        }
    }
    event.ip = json_text(object, "ip");
    event.useragent = json_text(object, "useragent");
    if (auto tls = object.find("tls"); tls != object.end()) {
        if (tls->is_boolean()) event.tls = tls->get<bool>();
        if (tls->is_number()) event.tls = tls->get<double>() != 0;
    }
    event.reason = json_text(object, "reason");
    event.status = json_text(object, "status");
    event.bounce_type = json_text(object, "type");
    if (auto attempt = json_integer(object, "attempt", 0, std::numeric_limits<int>::max())) {
        event.attempt = static_cast<int>(*attempt);
    }
    event.url = json_text(object, "url");
    if (auto offset = object.find("url_offset"); offset != object.end() && offset->is_object()) {
        if (auto index = json_integer(*offset, "index", 0, std::numeric_limits<int>::max())) {
            event.url_offset_index = static_cast<int>(*index);
        }
        event.url_offset_type = json_text(*offset, "type");
    }
    event.asm_group_id = json_integer(object, "asm_group_id");
    event.marketing_campaign_id = json_integer(object, "marketing_campaign_id");
    event.marketing_campaign_name = json_text(object, "marketing_campaign_name");
    event.marketing_campaign_version = json_text(object, "marketing_campaign_version");
    event.marketing_campaign_split_id = json_text(object, "marketing_campaign_split_id");
    for (const auto& [key, value] : object.items()) {
        if (!is_documented_event_key(key)) event.custom_args[key] = value;
    }
    return event;
}

std::vector<sg::WebhookEvent> parse_webhook_events(std::string_view body) {
    std::string problem;
    const nlohmann::json json = sg::detail::parse_json_text(body, &problem);
    if (json.is_discarded()) throw sg::InvalidMessage("body", problem);
    if (!json.is_array()) throw sg::InvalidMessage("body", "is not a JSON array of events");
    std::vector<sg::WebhookEvent> events;
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
    std::vector<sg::WebhookEvent> events;
    std::size_t duplicates = 0;
};

Handled handle(std::string_view body, InMemorySeenEventIds* seen) {
    Handled result;
    try {
        for (auto& event : parse_webhook_events(body)) {
            if (seen != nullptr && !event.sg_event_id.empty() &&
                !seen->first_time(event.sg_event_id)) {
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

void same_event(const sg::WebhookEvent& got, const sg::WebhookEvent& want) {
    same(got.type, want.type, "WebhookEvent::type differs from 0.8.0's");
    same(got.event, want.event, "WebhookEvent::event differs from 0.8.0's");
    same(got.email, want.email, "WebhookEvent::email differs from 0.8.0's");
    same(got.timestamp, want.timestamp, "WebhookEvent::timestamp differs from 0.8.0's");
    same(got.smtp_id, want.smtp_id, "WebhookEvent::smtp_id differs from 0.8.0's");
    same(got.sg_event_id, want.sg_event_id, "WebhookEvent::sg_event_id differs from 0.8.0's");
    same(got.sg_message_id, want.sg_message_id, "WebhookEvent::sg_message_id differs from 0.8.0's");
    same(got.categories, want.categories, "WebhookEvent::categories differs from 0.8.0's");
    same(got.ip, want.ip, "WebhookEvent::ip differs from 0.8.0's");
    same(got.useragent, want.useragent, "WebhookEvent::useragent differs from 0.8.0's");
    same(got.tls, want.tls, "WebhookEvent::tls differs from 0.8.0's");
    same(got.reason, want.reason, "WebhookEvent::reason differs from 0.8.0's");
    same(got.status, want.status, "WebhookEvent::status differs from 0.8.0's");
    same(got.bounce_type, want.bounce_type, "WebhookEvent::bounce_type differs from 0.8.0's");
    same(got.attempt, want.attempt, "WebhookEvent::attempt differs from 0.8.0's");
    same(got.url, want.url, "WebhookEvent::url differs from 0.8.0's");
    same(got.url_offset_index, want.url_offset_index,
         "WebhookEvent::url_offset_index differs from 0.8.0's");
    same(got.url_offset_type, want.url_offset_type,
         "WebhookEvent::url_offset_type differs from 0.8.0's");
    same(got.asm_group_id, want.asm_group_id, "WebhookEvent::asm_group_id differs from 0.8.0's");
    same(got.marketing_campaign_id, want.marketing_campaign_id,
         "WebhookEvent::marketing_campaign_id differs from 0.8.0's");
    same(got.marketing_campaign_name, want.marketing_campaign_name,
         "WebhookEvent::marketing_campaign_name differs from 0.8.0's");
    same(got.marketing_campaign_version, want.marketing_campaign_version,
         "WebhookEvent::marketing_campaign_version differs from 0.8.0's");
    same(got.marketing_campaign_split_id, want.marketing_campaign_split_id,
         "WebhookEvent::marketing_campaign_split_id differs from 0.8.0's");
    same(got.custom_args, want.custom_args, "WebhookEvent::custom_args differs from 0.8.0's");
    same(got.custom_args.is_object(), true, "WebhookEvent::custom_args is not an object");
    same(got.raw, want.raw, "WebhookEvent::raw differs from 0.8.0's");
    // nlohmann's == takes 1 for 1.0 and 0 for -0.0; the text tells those apart.
    if (got.raw.dump() != want.raw.dump()) {
        fuzz::fail("WebhookEvent::raw's text differs from 0.8.0's");
    }
    ++stats.comparisons;
}

void same_events(const std::vector<sg::WebhookEvent>& got,
                 const std::vector<sg::WebhookEvent>& want) {
    if (got.size() != want.size()) fuzz::fail("not as many events as 0.8.0 parsed");
    for (std::size_t i = 0; i < got.size(); ++i) same_event(got[i], want[i]);
}

void same_handled(const sg::WebhookResult& got, const oracle::Handled& want) {
    same(got.http_status, want.http_status, "handle(): the status differs from 0.8.0's");
    same(got.refusal_reason, want.refusal_reason, "handle(): the reason differs from 0.8.0's");
    same(got.refusal == sg::WebhookRefusal::malformed_body, want.http_status == 400,
         "handle(): the refusal differs from 0.8.0's");
    same(got.duplicates, want.duplicates, "handle(): duplicates differ from 0.8.0's");
    same_events(got.events, want.events);
}

/// parse_webhook_events and handle() (without and with de-duplication) against the oracle.
void compare_with_oracle(const sg::EventWebhook& unsigned_webhook, std::string_view body) {
    ++stats.bodies;
    std::optional<std::vector<sg::WebhookEvent>> want;
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
        same_events(got, *want);
    } catch (const sg::InvalidMessage& invalid) {
        if (want) fuzz::fail("parse_webhook_events refused a body 0.8.0 took");
        same(invalid.field() + " " + invalid.reason(), want_refusal,
             "parse_webhook_events refused with other words than 0.8.0");
    }

    same_handled(unsigned_webhook.handle({}, body), oracle::handle(body, nullptr));

    // De-duplication: the same body twice into a small set (so that eviction happens too).
    constexpr std::size_t capacity = 4;
    sg::WebhookOptions options;
    options.allow_unsigned = true;
    options.seen = std::make_shared<sg::InMemorySeenEventIds>(capacity);
    const sg::EventWebhook deduplicating(options);
    oracle::InMemorySeenEventIds seen(capacity);
    for (int round = 0; round < 2; ++round) {
        same_handled(deduplicating.handle({}, body), oracle::handle(body, &seen));
    }
}

struct Fixture {
    sg::testing::WebhookSigner signer;
    sg::EventWebhookVerifier verifier{signer.public_key_base64()};
    sg::EventWebhook checked{options(true)};
    sg::EventWebhook unsigned_{options(false)};

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
    compare_with_oracle(fixture.unsigned_, body);  // reaches the parser with any body
    return 0;
}
