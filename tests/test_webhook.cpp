#include <sendgrid_backend/webhook.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <sendgrid_backend/testing/webhook_signer.hpp>

#include <nlohmann/json.hpp>
#include "catch.hpp"
#include "support/seen_event_ids_0_8.hpp"

using sendgrid_backend::EventType;
using sendgrid_backend::EventWebhook;
using sendgrid_backend::EventWebhookVerifier;
using sendgrid_backend::HttpHeaders;
using sendgrid_backend::WebhookEvent;
using sendgrid_backend::WebhookOptions;
using sendgrid_backend::WebhookRefusal;
using sendgrid_backend::testing::WebhookSigner;

namespace {

// The vector the official SendGrid libraries test their verification with.
const std::string kSendgridPublicKey =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+"
    "2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const std::string kSendgridSignature =
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+"
    "luQAbPIqHh89M15TluLtEZtM=";
const std::string kSendgridTimestamp = "1600112502";
const std::string kSendgridPayload =
    R"([{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",)"
    R"("sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",)"
    R"("sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",)"
    R"("smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}])"
    "\r\n";
const std::string kOtherSendgridKey =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7a"
    "NDt"
    "hvj+y7GjUuFDb/R1NGe1OPzpA==";

constexpr std::int64_t kNow = 1'800'000'000;

WebhookOptions options_for(const WebhookSigner& signer) {
    WebhookOptions options;
    options.public_key = signer.public_key_base64();
    options.now = [] { return kNow; };
    return options;
}

/// SendGrid's headers for `body`, the signature header's name in lower case: HTTP header
/// names are case-insensitive and servers often hand them over lower-cased.
HttpHeaders signed_headers(const WebhookSigner& signer, const std::string& body,
                           std::int64_t timestamp = kNow) {
    HttpHeaders headers = signer.headers(body, timestamp);
    headers[0].first = sendgrid_backend::detail::to_lower_ascii(headers[0].first);
    return headers;
}

const std::string kAllEvents = R"([
  {"email":"a@example.com","timestamp":1700000001,"event":"processed","smtp-id":"<1@x>",
   "sg_event_id":"e1","sg_message_id":"MSG1.filter1","category":"welcome","order_id":"42"},
  {"email":"a@example.com","timestamp":1700000002,"event":"dropped","reason":"Bounced Address",
   "sg_event_id":"e2","sg_message_id":"MSG1.filter1"},
  {"email":"a@example.com","timestamp":1700000003,"event":"delivered","ip":"168.1.1.1",
   "tls":1,"response":"250 OK","sg_event_id":"e3","sg_message_id":"MSG1.filter1",
   "category":["welcome","onboarding"]},
  {"email":"a@example.com","timestamp":1700000004,"event":"deferred","attempt":"5",
   "reason":"try later","sg_event_id":"e4","sg_message_id":"MSG1.filter1"},
  {"email":"b@example.com","timestamp":1700000005,"event":"bounce","type":"blocked",
   "status":"5.7.1","reason":"spam","sg_event_id":"e5","sg_message_id":"MSG2.filter2"},
  {"email":"a@example.com","timestamp":1700000006,"event":"open","useragent":"Mozilla",
   "ip":"1.2.3.4","sg_machine_open":false,"sg_event_id":"e6","sg_message_id":"MSG1.filter1"},
  {"email":"a@example.com","timestamp":1700000007,"event":"click","url":"https://x.test/",
   "url_offset":{"index":2,"type":"html"},"sg_event_id":"e7","sg_message_id":"MSG1.filter1"},
  {"email":"a@example.com","timestamp":1700000008,"event":"spamreport","sg_event_id":"e8"},
  {"email":"a@example.com","timestamp":1700000009,"event":"unsubscribe","sg_event_id":"e9"},
  {"email":"a@example.com","timestamp":1700000010,"event":"group_unsubscribe",
   "asm_group_id":7,"sg_event_id":"e10"},
  {"email":"a@example.com","timestamp":1700000011,"event":"group_resubscribe",
   "asm_group_id":7,"sg_event_id":"e11","marketing_campaign_id":12,
   "marketing_campaign_name":"fall"},
  {"email":"a@example.com","timestamp":1700000012,"event":"brand_new_kind","sg_event_id":"e12"}
])";

}  // namespace

TEST_CASE("SendGrid's documented key and signature verify; any change does not",
          "[webhook][verify]") {
    const EventWebhookVerifier verifier(kSendgridPublicKey);
    CHECK(verifier.verify(kSendgridPayload, kSendgridSignature, kSendgridTimestamp));
    // The trailing CRLF is part of the signed bytes.
    CHECK_FALSE(verifier.verify(kSendgridPayload.substr(0, kSendgridPayload.size() - 2),
                                kSendgridSignature, kSendgridTimestamp));
    CHECK_FALSE(verifier.verify("payload", kSendgridSignature, kSendgridTimestamp));
    CHECK_FALSE(verifier.verify(kSendgridPayload, kSendgridSignature, "timestamp"));
    CHECK_FALSE(verifier.verify(kSendgridPayload,
                                "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/"
                                "U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=",
                                kSendgridTimestamp));
    CHECK_FALSE(EventWebhookVerifier(kOtherSendgridKey)
                    .verify(kSendgridPayload, kSendgridSignature, kSendgridTimestamp));
}

TEST_CASE("fresh P-256 keys: tampering with anything breaks the signature", "[webhook][verify]") {
    const WebhookSigner signer;
    const EventWebhookVerifier verifier(signer.public_key_base64());
    const std::string body = R"([{"event":"delivered","email":"a@example.com"}])";
    const std::string signature = signer.sign(body, "1700000000");

    CHECK(verifier.verify(body, signature, "1700000000"));
    CHECK_FALSE(verifier.verify(body + " ", signature, "1700000000"));     // body
    CHECK_FALSE(verifier.verify(body, signature, "1700000001"));           // timestamp
    CHECK_FALSE(EventWebhookVerifier(WebhookSigner().public_key_base64())  // key
                    .verify(body, signature, "1700000000"));
    CHECK(verifier.check(body, signature.substr(0, 20), "1700000000") ==  // truncated
          WebhookRefusal::bad_signature_encoding);
    CHECK(verifier.check(body, "not base64 at all!", "1700000000") ==
          WebhookRefusal::bad_signature_encoding);
    CHECK(verifier.check(body, sendgrid_backend::detail::base64_encode(std::string(70, 'x')),
                         "1700000000") != WebhookRefusal::none);  // base64, but not DER
    CHECK(verifier.check(body, "", "1700000000") == WebhookRefusal::bad_signature_encoding);
}

TEST_CASE("CRLF bodies are verified as the raw bytes", "[webhook][verify]") {
    const WebhookSigner signer;
    const EventWebhookVerifier verifier(signer.public_key_base64());
    const std::string body = "[{\"event\":\"open\"}]\r\n";
    const std::string signature = signer.sign(body, "1");
    CHECK(verifier.verify(body, signature, "1"));
    CHECK_FALSE(verifier.verify("[{\"event\":\"open\"}]\n", signature, "1"));
}

TEST_CASE("keys: PEM and DER both work; the key's own curve is used", "[webhook][verify]") {
    const WebhookSigner p256;
    const std::string signature = p256.sign("body", "7");
    CHECK(EventWebhookVerifier(p256.public_key_pem()).verify("body", signature, "7"));
    CHECK(EventWebhookVerifier(p256.public_key_base64()).verify("body", signature, "7"));
    // As read from a file or pasted: line ends around the key are not part of it.
    CHECK(EventWebhookVerifier("\r\n " + p256.public_key_base64() + "\n")
              .verify("body", signature, "7"));
    CHECK(EventWebhookVerifier(p256.public_key_pem() + "\r\n").verify("body", signature, "7"));

    const WebhookSigner k256("secp256k1");  // the official libraries accept it too
    CHECK(
        EventWebhookVerifier(k256.public_key_base64()).verify("body", k256.sign("body", "7"), "7"));
}

TEST_CASE("unreadable keys are ImproperlyConfigured", "[webhook][verify]") {
    using sendgrid_backend::ImproperlyConfigured;
    CHECK_THROWS_AS(EventWebhookVerifier(""), ImproperlyConfigured);
    CHECK_THROWS_AS(EventWebhookVerifier("not a key"), ImproperlyConfigured);
    CHECK_THROWS_AS(EventWebhookVerifier(kSendgridPublicKey.substr(0, 40)), ImproperlyConfigured);
    CHECK_THROWS_AS(
        EventWebhookVerifier("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ImproperlyConfigured);
    // An RSA key is a valid key, but not what SendGrid signs with.
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> rsa(EVP_RSA_gen(1024), EVP_PKEY_free);
    unsigned char* der = nullptr;
    const int size = i2d_PUBKEY(rsa.get(), &der);
    const std::string rsa_key = sendgrid_backend::detail::base64_encode(
        std::string(reinterpret_cast<char*>(der), static_cast<std::size_t>(size)));
    OPENSSL_free(der);
    CHECK_THROWS_AS(EventWebhookVerifier(rsa_key), ImproperlyConfigured);

    WebhookOptions options;
    CHECK_THROWS_AS(EventWebhook(options), ImproperlyConfigured);  // no key, not allow_unsigned
    options.allow_unsigned = true;
    CHECK_NOTHROW(EventWebhook(options));
}

TEST_CASE("the replay window refuses stale and future timestamps", "[webhook][handle]") {
    const WebhookSigner signer;
    const EventWebhook webhook(options_for(signer));
    const std::string body = R"([{"event":"open","sg_event_id":"r1"}])";

    CHECK(webhook.handle(signed_headers(signer, body, kNow - 599), body).http_status == 200);
    auto stale = webhook.handle(signed_headers(signer, body, kNow - 601), body);
    CHECK(stale.refusal == WebhookRefusal::stale_timestamp);
    CHECK(stale.http_status == 401);
    auto future = webhook.handle(signed_headers(signer, body, kNow + 601), body);
    CHECK(future.refusal == WebhookRefusal::future_timestamp);

    WebhookOptions no_window = options_for(signer);
    no_window.tolerance.reset();  // e.g. checking recorded requests
    no_window.seen.reset();
    CHECK(EventWebhook(no_window).handle(signed_headers(signer, body, 1000), body).accepted());
}

TEST_CASE("the replay window: its bound is checked, and any clock compares without overflow",
          "[webhook][handle]") {
    const WebhookSigner signer;
    for (const auto tolerance : {std::chrono::seconds(-1), std::chrono::seconds(INT64_MAX),
                                 WebhookOptions::max_tolerance + std::chrono::seconds(1)}) {
        WebhookOptions options = options_for(signer);
        options.tolerance = tolerance;
        try {
            EventWebhook webhook(options);
            FAIL("not refused");
        } catch (const sendgrid_backend::ImproperlyConfigured& error) {
            CHECK(std::string(error.what()).find("WebhookOptions::tolerance") != std::string::npos);
        }
    }
    // The user's clock at either end of its range: refused as stale or future, nothing more.
    const std::string body = R"([{"event":"open","sg_event_id":"w1"}])";
    for (const std::int64_t now : {INT64_MAX, INT64_MIN}) {
        WebhookOptions options = options_for(signer);
        options.tolerance = WebhookOptions::max_tolerance;
        options.now = [now] { return now; };
        const auto result = EventWebhook(options).handle(signed_headers(signer, body, kNow), body);
        CHECK(result.refusal ==
              (now > 0 ? WebhookRefusal::stale_timestamp : WebhookRefusal::future_timestamp));
    }
}

TEST_CASE("SendGrid's recorded request passes with the window off", "[webhook][handle]") {
    WebhookOptions options;
    options.public_key = kSendgridPublicKey;
    options.tolerance.reset();
    const EventWebhook webhook(options);
    const auto result = webhook.handle(
        {{std::string(sendgrid_backend::webhook_signature_header), kSendgridSignature},
         {std::string(sendgrid_backend::webhook_timestamp_header), kSendgridTimestamp}},
        kSendgridPayload);
    REQUIRE(result.accepted());
    REQUIRE(result.events.size() == 1);
    CHECK(result.events[0].type == EventType::dropped);
    CHECK(result.events[0].reason == "Bounced Address");
}

TEST_CASE("malformed headers, bodies and sizes are clean refusals", "[webhook][handle]") {
    const WebhookSigner signer;
    WebhookOptions options = options_for(signer);
    const EventWebhook webhook(options);
    const std::string body = "[]";

    CHECK(webhook.handle({}, body).refusal == WebhookRefusal::missing_signature);
    HttpHeaders headers = signed_headers(signer, body);
    headers[1].second = "12a";
    CHECK(webhook.handle(headers, body).refusal == WebhookRefusal::bad_timestamp);
    headers = signed_headers(signer, body);
    headers[0].second = "%%%";
    CHECK(webhook.handle(headers, body).refusal == WebhookRefusal::bad_signature_encoding);
    headers = signed_headers(signer, body);
    CHECK(webhook.handle(headers, "[ ]").refusal == WebhookRefusal::signature_mismatch);

    const std::string big(10 * 1024 * 1024, ' ');
    const auto too_big = webhook.handle(signed_headers(signer, big), big);
    CHECK(too_big.http_status == 413);
    CHECK(too_big.refusal == WebhookRefusal::body_too_large);

    const auto empty = webhook.handle(signed_headers(signer, "[]"), "[]");
    CHECK(empty.http_status == 200);
    CHECK(empty.events.empty());

    const auto nested = [](int depth) {  // an open event whose field "x" makes `depth` levels
        return R"([{"event":"open","email":"a@b.c","timestamp":1,"x":)" +
               std::string(depth - 2, '[') + std::string(depth - 2, ']') + "}]";
    };
    const auto deepest = webhook.handle(signed_headers(signer, nested(512)), nested(512));
    CHECK(deepest.http_status == 200);
    CHECK(deepest.events.size() == 1);

    for (const std::string& bad :
         {std::string(R"({"event":"open"})"), std::string("[1,2]"), std::string("[{\"event\":"),
          std::string("\"x\""), std::string("[]") + '\0' + "[1]", nested(513), nested(100'000)}) {
        INFO(bad);
        const auto result = webhook.handle(signed_headers(signer, bad), bad);
        CHECK(result.http_status == 400);
        CHECK(result.refusal == WebhookRefusal::malformed_body);
    }
}

TEST_CASE("every event type is parsed, unknown ones kept, custom args kept", "[webhook][parse]") {
    const auto events = sendgrid_backend::parse_webhook_events(kAllEvents);
    REQUIRE(events.size() == 12);
    const EventType expected[] = {EventType::processed,
                                  EventType::dropped,
                                  EventType::delivered,
                                  EventType::deferred,
                                  EventType::bounce,
                                  EventType::open,
                                  EventType::click,
                                  EventType::spamreport,
                                  EventType::unsubscribe,
                                  EventType::group_unsubscribe,
                                  EventType::group_resubscribe,
                                  EventType::unknown};
    for (std::size_t i = 0; i < 12; ++i) {
        INFO(i);
        CHECK(events[i].type == expected[i]);
        CHECK(events[i].sg_event_id == "e" + std::to_string(i + 1));
        CHECK(events[i].timestamp == 1700000001 + static_cast<std::int64_t>(i));
    }
    CHECK(events[0].smtp_id == "<1@x>");
    CHECK(events[0].categories == std::vector<std::string>{"welcome"});
    CHECK(events[0].custom_args == std::map<std::string, std::string>{{"order_id", "42"}});
    CHECK(events[1].reason == "Bounced Address");
    CHECK(events[2].categories == std::vector<std::string>{"welcome", "onboarding"});
    CHECK(events[2].tls == true);
    CHECK(events[2].ip == "168.1.1.1");
    CHECK(events[2].custom_args.empty());  // "response" is SendGrid's own
    CHECK(events[3].attempt == 5);
    CHECK(events[4].bounce_type == "blocked");
    CHECK(events[4].status == "5.7.1");
    CHECK(events[5].useragent == "Mozilla");
    CHECK(events[6].url == "https://x.test/");
    CHECK(events[6].url_offset_index == 2);
    CHECK(events[6].url_offset_type == "html");
    CHECK(events[9].asm_group_id == 7);
    CHECK(events[10].marketing_campaign_id == 12);
    CHECK(events[10].marketing_campaign_name == "fall");
    CHECK(events[11].event == "brand_new_kind");
    CHECK(events[11].json()["sg_event_id"] == "e12");
}

TEST_CASE("handle emits each new event once and drops SendGrid's retries", "[webhook][handle]") {
    const WebhookSigner signer;
    const EventWebhook webhook(options_for(signer));
    std::vector<std::string> seen;
    sendgrid_backend::ScopedConnection connection =
        sendgrid_backend::sendgrid_event_received.connect(
            [&](const EventWebhook& sender, const WebhookEvent& event) {
                CHECK(&sender == &webhook);
                seen.push_back(event.sg_event_id);
            });

    const auto first = webhook.handle(signed_headers(signer, kAllEvents), kAllEvents);
    CHECK(first.http_status == 200);
    CHECK(first.events.size() == 12);
    CHECK(first.duplicates == 0);
    CHECK(seen.size() == 12);

    const auto retry = webhook.handle(signed_headers(signer, kAllEvents), kAllEvents);
    CHECK(retry.http_status == 200);  // answered 200, so SendGrid stops retrying
    CHECK(retry.events.empty());
    CHECK(retry.duplicates == 12);
    CHECK(seen.size() == 12);
}

TEST_CASE("a throwing event handler goes to the error handler, the others still run",
          "[webhook][handle]") {
    const WebhookSigner signer;
    WebhookOptions options = options_for(signer);
    std::vector<std::string> errors;
    options.on_handler_error = [&](const WebhookEvent& event, std::exception_ptr) {
        errors.push_back(event.sg_event_id);
    };
    const EventWebhook webhook(options);
    int calls = 0;
    sendgrid_backend::ScopedConnection thrower = sendgrid_backend::sendgrid_event_received.connect(
        [](const EventWebhook&, const WebhookEvent&) { throw std::runtime_error("db down"); });
    sendgrid_backend::ScopedConnection counter = sendgrid_backend::sendgrid_event_received.connect(
        [&](const EventWebhook&, const WebhookEvent&) { ++calls; });
    const std::string body =
        R"([{"event":"open","sg_event_id":"x1"},{"event":"open","sg_event_id":"x2"}])";
    CHECK(webhook.handle(signed_headers(signer, body), body).http_status == 200);
    CHECK(calls == 2);
    CHECK(errors == std::vector<std::string>{"x1", "x2"});
}

TEST_CASE("in-memory seen ids keep the most recent ones", "[webhook]") {
    sendgrid_backend::InMemorySeenEventIds seen(2);
    CHECK(seen.first_time("a"));
    CHECK_FALSE(seen.first_time("a"));
    CHECK(seen.first_time("b"));
    CHECK(seen.first_time("c"));  // "a" falls out
    CHECK(seen.first_time("a"));
}

TEST_CASE("in-memory seen ids forget in the order ids came, as 0.8.0's set did", "[webhook]") {
    using Oracle = test_support::SeenEventIds08;  // 0.8.0's set, the ring's oracle
    std::mt19937 random(20261206);
    // 1000: a table grown many times and emptied slot by slot, past its wrap-around, for long.
    for (std::size_t capacity : {0, 1, 2, 3, 4, 7, 64, 1000}) {
        INFO("capacity " << capacity);
        sendgrid_backend::InMemorySeenEventIds seen(capacity);
        Oracle oracle(capacity);
        // Ids short enough for std::string's inline buffer and long ones on the heap: a reused
        // place's string takes a longer or a shorter id.
        const std::size_t distinct = capacity + 3 + capacity / 2;
        for (std::size_t i = 0; i < std::max<std::size_t>(5000, 200 * capacity); ++i) {
            const std::size_t which = random() % distinct;
            const std::string id = which % 2 == 0 ? "e" + std::to_string(which)
                                                  : std::string(40, 'x') + std::to_string(which);
            INFO("step " << i << ", id " << id);
            REQUIRE(seen.first_time(id) == oracle.first_time(id));
        }
    }
}

TEST_CASE("handle drops repeats inside one batch too, keeping the order", "[webhook][handle]") {
    const WebhookSigner signer;
    const EventWebhook webhook(options_for(signer));
    const std::string body =
        R"([{"sg_event_id":"d1","event":"open"},{"sg_event_id":"d2","event":"open"},)"
        R"({"sg_event_id":"d1","event":"click"},{"event":"open"},{"event":"open"},)"
        R"({"sg_event_id":"d3","event":"open"},{"sg_event_id":"d2","event":"open"}])";
    const auto result = webhook.handle(signed_headers(signer, body), body);
    REQUIRE(result.accepted());
    CHECK(result.duplicates == 2);
    std::vector<std::string> ids;
    for (const auto& event : result.events) ids.push_back(event.sg_event_id);
    // Events without an id are never taken for repeats.
    CHECK(ids == std::vector<std::string>{"d1", "d2", "", "", "d3"});
    CHECK(result.events[0].type == EventType::open);  // the first d1, not the click
}

TEST_CASE("events are matched to sent messages by X-Message-Id", "[webhook]") {
    WebhookEvent event;
    event.sg_message_id = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0";
    CHECK(sendgrid_backend::belongs_to(event, "14c5d75ce93"));
    CHECK_FALSE(sendgrid_backend::belongs_to(event, "14c5d75ce9"));  // a prefix, not the id
    CHECK_FALSE(sendgrid_backend::belongs_to(event, ""));
    sendgrid_backend::EmailMessage message;
    message.outcome.message_id = "14c5d75ce93";
    CHECK(sendgrid_backend::belongs_to(event, message));
}

TEST_CASE(
    "WebhookOptions::statuses: each batch applied once; a failing store answers 503 and "
    "the batch can come again",
    "[webhook][status]") {
    struct FlakyStore : sendgrid_backend::MemoryStatusStore {
        bool down = true;
        sendgrid_backend::AppliedFacts apply(
            const std::vector<sendgrid_backend::PreparedFact>& facts) override {
            if (down) throw std::runtime_error("store down");
            return MemoryStatusStore::apply(facts);
        }
    };
    auto store = std::make_shared<FlakyStore>();
    sendgrid_backend::StatusTrackerOptions tracker_options;
    tracker_options.store = store;
    auto tracker = std::make_shared<sendgrid_backend::StatusTracker>(tracker_options);
    WebhookOptions options;
    options.allow_unsigned = true;
    options.statuses = tracker;
    const EventWebhook webhook(options);
    int received = 0;
    sendgrid_backend::ScopedConnection connection =
        sendgrid_backend::sendgrid_event_received.connect(
            [&](const EventWebhook&, const WebhookEvent&) { ++received; });
    const std::string body =
        R"([{"email":"a@example.com","event":"delivered","timestamp":1700000000,)"
        R"("sg_event_id":"e1","sendgrid_backend_key":"k"},)"
        R"({"email":"b@example.com","event":"open","timestamp":1700000000,"sg_event_id":"e2"}])";

    const auto refused = webhook.handle({}, body);
    CHECK(refused.http_status == 503);
    CHECK(refused.refusal == WebhookRefusal::status_store_failed);
    CHECK(refused.refusal_reason.find("store down") != std::string::npos);
    CHECK(received == 0);

    store->down = false;  // SendGrid sends the batch again: nothing of it was taken as seen
    const auto accepted = webhook.handle({}, body);
    CHECK(accepted.http_status == 200);
    CHECK(accepted.statuses_applied == 1);  // the second event has no tracking key
    CHECK(accepted.events.size() == 2);
    CHECK(received == 2);
    CHECK(tracker->status("k")->recipient("a@example.com")->state ==
          sendgrid_backend::DeliveryState::delivered);

    const auto again = webhook.handle({}, body);
    CHECK(again.statuses_applied == 0);
    CHECK(again.duplicates == 2);
    CHECK(store->applied_facts() == 2);  // the event, and what it says of its send
}

namespace {

/// A memory store that applies each part as soon as it is made (as the Redis store sends it),
/// noting how many facts each part held and how many events had been read by then.
struct PartByPartStore : sendgrid_backend::MemoryStatusStore {
    std::vector<std::size_t> part_sizes;
    std::function<std::size_t()> events_read;  // set by the test, when it can tell
    std::vector<std::size_t> read_at_part;

    void apply_in_parts(const std::vector<sendgrid_backend::PreparedFact>& facts,
                        const std::function<bool()>& more, const PartApplied& applied) override {
        std::size_t done = 0;
        while (more()) {
            if (facts.size() == done) continue;
            const std::vector<sendgrid_backend::PreparedFact> part(
                facts.begin() + static_cast<std::ptrdiff_t>(done), facts.end());
            part_sizes.push_back(part.size());
            if (events_read) read_at_part.push_back(events_read());
            applied(done, facts.size(), apply(part));
            done = facts.size();
        }
    }
};

/// `count` tracked events, one message each, as SendGrid posts them.
std::string tracked_events(int count) {
    std::string body = "[";
    for (int i = 0; i < count; ++i) {
        if (i > 0) body += ',';
        body += R"({"email":"u)" + std::to_string(i) + R"(@example.com","event":"delivered",)" +
                R"("timestamp":1700000000,"sg_event_id":"e)" + std::to_string(i) +
                R"(","sendgrid_backend_key":"k)" + std::to_string(i) + R"("})";
    }
    return body + "]";
}

/// A tracker over `store`.
std::shared_ptr<sendgrid_backend::StatusTracker> tracker_over(
    std::shared_ptr<sendgrid_backend::StatusStore> store) {
    sendgrid_backend::StatusTrackerOptions options;
    options.store = std::move(store);
    return std::make_shared<sendgrid_backend::StatusTracker>(options);
}

}  // namespace

TEST_CASE(
    "WebhookOptions::statuses: the body checked whole, then read a part at a time while the "
    "store applies the part before; a body refused changes no status",
    "[webhook][status]") {
    namespace sg = sendgrid_backend;
    auto store = std::make_shared<PartByPartStore>();
    WebhookOptions options;
    options.allow_unsigned = true;
    options.statuses = tracker_over(store);
    const EventWebhook webhook(options);
    std::vector<std::string> changed;  // each change's event, by its id
    sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
        [&](const std::string& key, const std::string&, const sg::RecipientState&,
            const sg::RecipientState&, const sg::StatusEvent& event) {
            REQUIRE(event.event != nullptr);
            changed.push_back(key + "/" + event.event->sg_event_id);
        });

    // Broken at its very end: refused before anything is applied.
    const std::string body = tracked_events(600);
    const auto refused = webhook.handle({}, body.substr(0, body.size() - 1));
    CHECK(refused.http_status == 400);
    CHECK(refused.refusal == WebhookRefusal::malformed_body);
    CHECK(refused.refusal_reason == "body is not valid JSON");
    CHECK(store->applied_facts() == 0);
    CHECK(store->part_sizes.empty());
    CHECK(changed.empty());
    const auto not_objects = webhook.handle({}, "[" + body.substr(1, body.size() - 2) + ",7]");
    CHECK(not_objects.refusal_reason == "body[600] is not an event object");
    CHECK(store->applied_facts() == 0);

    const auto accepted = webhook.handle({}, body);
    CHECK(accepted.http_status == 200);
    CHECK(accepted.statuses_applied == 600);
    const std::vector<WebhookEvent> parsed = sg::parse_webhook_events(body);
    REQUIRE(accepted.events.size() == parsed.size());
    for (std::size_t i = 0; i < parsed.size(); ++i) CHECK(accepted.events[i].raw == parsed[i].raw);
    // Parts of 50 events, then 250, each event two facts (the recipient's, the send's).
    CHECK(store->part_sizes == std::vector<std::size_t>{100, 500, 500, 100});
    CHECK(store->applied_facts() == 1200);
    REQUIRE(changed.size() == 1200);  // a change a fact: each message new
    CHECK(changed.front() == "k0/e0");
    CHECK(changed.back() == "k599/e599");
    // Fingerprints made from the digests the reader kept, a part at a time, are the events'
    // own: the same events made into facts from their text are all copies.
    CHECK(options.statuses->record(parsed) == 0);
    CHECK(store->applied_facts() == 1200);
    CHECK(changed.size() == 1200);
}

TEST_CASE(
    "StatusTracker::record with a reader: events read as their parts are applied, each "
    "signal pointing at its event however the vector grew",
    "[webhook][status]") {
    namespace sg = sendgrid_backend;
    auto store = std::make_shared<PartByPartStore>();
    const auto tracker = tracker_over(store);
    const std::vector<WebhookEvent> source = sg::parse_webhook_events(tracked_events(700));
    std::vector<WebhookEvent> events;  // no room reserved: it moves as it grows
    std::vector<std::size_t> asked;
    store->events_read = [&] { return events.size(); };
    std::size_t mismatched = 0;
    std::size_t changes = 0;
    sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
        [&](const std::string& key, const std::string& recipient, const sg::RecipientState&,
            const sg::RecipientState&, const sg::StatusEvent& event) {
            ++changes;
            const std::string number = key.substr(1);
            if (event.event == nullptr || event.event->sg_event_id != "e" + number ||
                (!recipient.empty() && recipient != "u" + number + "@example.com")) {
                ++mismatched;
            }
        });
    const std::size_t applied =
        tracker->record(events, [&](std::vector<WebhookEvent>& into, std::size_t most) {
            asked.push_back(most);
            const std::size_t take = std::min(most, source.size() - into.size());
            into.insert(into.end(), source.begin() + static_cast<std::ptrdiff_t>(into.size()),
                        source.begin() + static_cast<std::ptrdiff_t>(into.size() + take));
            return take;
        });
    CHECK(applied == 700);
    CHECK(events.size() == 700);
    // Each part read just before it is applied: 50 events (the first part is small), then
    // 250 at a time.
    CHECK(store->read_at_part == std::vector<std::size_t>{50, 300, 550, 700});
    CHECK(asked == std::vector<std::size_t>{50, 250, 250, 250, 250});
    CHECK(changes == 1400);
    CHECK(mismatched == 0);
}
