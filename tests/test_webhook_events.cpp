// Parsing Event Webhook events needs nlohmann/json only (no OpenSSL): this test links nothing
// else. Every number read from the network is taken when it fits and refused when it does not,
// never converted with undefined behaviour (1e300 into an int64 was, before 0.2.0).
#include <sendgrid_backend/detail/json/parse.hpp>
#include <sendgrid_backend/detail/json/tree.hpp>
#include <sendgrid_backend/webhook_events.hpp>

#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"

using sendgrid_backend::parse_webhook_events;

namespace {

sendgrid_backend::WebhookEvent one_event(const std::string& fields) {
    const auto events =
        parse_webhook_events(R"([{"event":"deferred","email":"a@b.c",)" + fields + "}]");
    REQUIRE(events.size() == 1);
    return events[0];
}

/// What WebhookBodyReader::check says of `body`: "taken", or the refusal's field and reason.
std::string check_refusal(std::string_view body) {
    try {
        sendgrid_backend::detail::WebhookBodyReader::check(body);
    } catch (const sendgrid_backend::InvalidWebhookBody& invalid) {
        return invalid.field() + " " + invalid.reason();
    }
    return "taken";
}

}  // namespace

TEST_CASE("a body read a few events at a time gives the events parsed at once",
          "[webhook][parse]") {
    using sendgrid_backend::WebhookEvent;
    using sendgrid_backend::detail::WebhookBodyReader;
    std::string body = "\xEF\xBB\xBF[";
    for (int i = 0; i < 11; ++i) {
        if (i > 0) body += i % 2 == 0 ? "," : " ,\n ";
        body += R"({"event":"open","email":"u)" + std::to_string(i) +
                R"(@example.com","timestamp":)" + std::to_string(1700000000 + i) +
                R"(,"sg_event_id":"e)" + std::to_string(i) + R"(","key":{"n":[)" +
                std::to_string(i) + "]}}";
    }
    body += "]";
    const std::vector<WebhookEvent> whole = parse_webhook_events(body);
    REQUIRE(whole.size() == 11);
    for (std::size_t step : {1, 2, 7, 11, 100}) {
        CAPTURE(step);
        WebhookBodyReader reader(body);
        std::vector<WebhookEvent> events;
        CHECK(reader.check_rest() == 11);
        std::size_t calls = 0;
        while (reader.read(&events, step) > 0) {
            ++calls;
            if (calls == 1) CHECK(reader.check_rest() == 11 - events.size());  // and goes on
        }
        CHECK_NOTHROW(reader.finish());
        CHECK(calls == (11 + step - 1) / step);
        REQUIRE(events.size() == whole.size());
        for (std::size_t i = 0; i < events.size(); ++i) {
            CHECK(events[i].raw == whole[i].raw);
            CHECK(events[i].email == whole[i].email);
            CHECK(events[i].timestamp == whole[i].timestamp);
            CHECK(events[i].sg_event_id == whole[i].sg_event_id);
            CHECK(events[i].custom_args == whole[i].custom_args);
        }
    }
    // A body check() refuses: read a part at a time without it, the refusal comes where the
    // reading meets it (why EventWebhook checks first).
    const std::string broken = body.substr(0, body.size() - 3);
    CHECK(check_refusal(broken) == "body is not valid JSON");
    WebhookBodyReader reader(broken);
    std::vector<WebhookEvent> events;
    CHECK(reader.read(&events, 5) == 5);
    CHECK_THROWS_AS(reader.read(&events, 100), sendgrid_backend::InvalidWebhookBody);
}

TEST_CASE("timestamps that do not fit an int64 are refused, not wrapped", "[webhook][numbers]") {
    CHECK(one_event(R"("timestamp":1700000000)").timestamp == 1700000000);
    CHECK(one_event(R"("timestamp":1700000000.75)").timestamp == 1700000000);
    CHECK(one_event(R"("timestamp":"1700000000")").timestamp == 1700000000);
    CHECK(one_event(R"("timestamp":9223372036854775807)").timestamp ==
          std::numeric_limits<std::int64_t>::max());
    for (const char* huge : {"1e300", "-1e300", "1.8446744073709552e19", "9223372036854775808.0",
                             "18446744073709551615", "9223372036854775808",
                             "\"99999999999999999999\"", "true", "[1]", "null"}) {
        INFO(huge);
        CHECK(one_event(std::string(R"("timestamp":)") + huge).timestamp == 0);
    }
}

TEST_CASE("int fields refuse what does not fit an int", "[webhook][numbers]") {
    CHECK(one_event(R"("attempt":5)").attempt == 5);
    CHECK(one_event(R"("attempt":"5")").attempt == 5);
    for (const char* bad : {"1e10", "3000000000", "-1", "1e300", "-1e300", "\"99999999999\"",
                            "18446744073709551615"}) {
        INFO(bad);
        CHECK_FALSE(one_event(std::string(R"("attempt":)") + bad).attempt.has_value());
        CHECK_FALSE(one_event(std::string(R"("url_offset":{"index":)") + bad + "}")
                        .url_offset_index.has_value());
    }
    CHECK(one_event(R"("url_offset":{"index":2,"type":"html"})").url_offset_index == 2);
}

TEST_CASE("int64 ids refuse what does not fit", "[webhook][numbers]") {
    CHECK(one_event(R"("asm_group_id":7)").asm_group_id == 7);
    CHECK_FALSE(one_event(R"("asm_group_id":1e300)").asm_group_id.has_value());
    CHECK_FALSE(one_event(R"("marketing_campaign_id":18446744073709551615)").marketing_campaign_id);
    CHECK(one_event(R"("marketing_campaign_id":-3)").marketing_campaign_id == -3);
}

TEST_CASE("unknown keys and kinds are kept: custom_args and raw", "[webhook][parse]") {
    const std::string body =
        R"([{"event":"brand_new_kind","email":"a@b.c","response":"250 OK","order":{"id":[1,2]},)"
        R"("tenant":null,"":"empty key","Email":"not email","smtp_id":"not smtp-id"}])";
    const auto events = parse_webhook_events(body);
    REQUIRE(events.size() == 1);
    const auto& event = events[0];
    CHECK(event.type == sendgrid_backend::EventType::unknown);
    CHECK(event.event == "brand_new_kind");
    CHECK(event.email == "a@b.c");
    CHECK(event.smtp_id.empty());
    // Every key SendGrid does not document, with its value as text; "response" is SendGrid's.
    CHECK(event.custom_args == std::map<std::string, std::string>{{"order", R"({"id":[1,2]})"},
                                                                  {"tenant", "null"},
                                                                  {"", "empty key"},
                                                                  {"Email", "not email"},
                                                                  {"smtp_id", "not smtp-id"}});
    CHECK(event.raw == body.substr(1, body.size() - 2));
    CHECK(event.json() == nlohmann::json::parse(body)[0]);
    CHECK(one_event(R"("timestamp":1)").custom_args.empty());
}

TEST_CASE("custom_args: strings decoded, other values their JSON text without spaces",
          "[webhook][parse]") {
    const auto event = one_event(
        "\"s\":\"caf\\u00e9 \\\"x\\\"\", \"n\" : -12.50e1 ,\"t\":true,\"z\":null,"
        "\"o\":{ \"a\" :\t[ 1 ,\n2 ], \"b c\":\" x \\\" y \" },\"e\":[ ]");
    CHECK(event.custom_args.at("s") == "caf\xC3\xA9 \"x\"");
    CHECK(event.custom_args.at("n") == "-12.50e1");  // as received, not reformatted
    CHECK(event.custom_args.at("t") == "true");
    CHECK(event.custom_args.at("z") == "null");
    CHECK(event.custom_args.at("o") ==
          R"({"a":[1,2],"b c":" x \" y "})");  // spaces in strings stay
    CHECK(event.custom_args.at("e") == "[]");
    // A text field takes the same rule, but null is empty there.
    const auto text = one_event(R"("reason": { "a" : [ 1 , "b c" ] }, "url" : 1.50, "ip":null)");
    CHECK(text.reason == R"({"a":[1,"b c"]})");
    CHECK(text.url == "1.50");
    CHECK(text.ip.empty());
    CHECK(one_event(R"("bounce_classification":"Invalid Address")").bounce_classification ==
          "Invalid Address");
    CHECK(one_event(R"("bounce_classification":"Invalid Address")").custom_args.empty());
}

TEST_CASE("a key given twice: the last one counts", "[webhook][parse]") {
    const auto event =
        one_event(R"("order":"1","order":{"id":2},"category":["a","b"],"category":"c","tls":true,)"
                  R"("tls":"yes","attempt":3,"attempt":"x","url_offset":{"index":1,"index":"2",)"
                  R"("type":"html","type":null},"reason":"first","reason":"second")");
    CHECK(event.custom_args.at("order") == R"({"id":2})");
    CHECK(event.categories == std::vector<std::string>{"c"});
    CHECK_FALSE(event.tls.has_value());
    CHECK_FALSE(event.attempt.has_value());
    CHECK(event.url_offset_index == 2);
    CHECK(event.url_offset_type.empty());
    CHECK(event.reason == "second");
    CHECK(one_event(R"("url_offset":{"index":1},"url_offset":7)").url_offset_index == std::nullopt);
    CHECK(one_event(R"("category":["a"],"category":7)").categories.empty());
    CHECK(one_event(R"("email":"x@y.z")").email == "x@y.z");  // after one_event's own email
}

TEST_CASE("raw is the event's text as received; json() parses it", "[webhook][parse]") {
    const std::string first = "{ \"event\" : \"open\",\n\t\"email\":\"a@b.c\", \"k\":\"\\u0041\" }";
    const std::string second = R"({"event":"click","url_offset":{"index":1}})";
    const auto events = parse_webhook_events("\xEF\xBB\xBF [ " + first + " ,\n" + second + " ] ");
    REQUIRE(events.size() == 2);
    CHECK(events[0].raw == first);
    CHECK(events[1].raw == second);
    CHECK(events[0].json() == nlohmann::json{{"event", "open"}, {"email", "a@b.c"}, {"k", "A"}});
    CHECK(events[1].json() == nlohmann::json::parse(second));
    CHECK(parse_webhook_events("[{}]")[0].raw == "{}");
    sendgrid_backend::WebhookEvent built;
    built.raw = "{not json";
    CHECK_THROWS_AS(built.json(), sendgrid_backend::InvalidWebhookBody);
}

TEST_CASE("bodies that are not a JSON array of objects are refused as before", "[webhook][parse]") {
    namespace detail = sendgrid_backend::detail;
    const auto refusal = [](std::string_view body) {
        // The check before reading in parts (EventWebhook with statuses) says the same.
        const std::string checked = check_refusal(body);
        try {
            parse_webhook_events(body);
        } catch (const sendgrid_backend::InvalidWebhookBody& invalid) {
            CHECK(checked == invalid.field() + " " + invalid.reason());
            return invalid.field() + " " + invalid.reason();
        }
        CHECK(checked == "taken");
        return std::string("taken");
    };
    std::string deep;
    for (int i = 0; i < detail::max_json_text_depth; ++i) deep += "[";
    deep += std::string(static_cast<std::size_t>(detail::max_json_text_depth), ']');
    CHECK(refusal("[{}] x") == "body is not valid JSON");
    CHECK(refusal("[{},]") == "body is not valid JSON");
    CHECK(refusal("") == "body is not valid JSON");
    CHECK(refusal(R"([{"a":1}, 2, {"b":3}])") == "body[1] is not an event object");
    CHECK(refusal(R"([{"a":1}, 2, {"b":])") == "body is not valid JSON");  // JSON decides first
    CHECK(refusal(R"({"event":"open"})") == "body is not a JSON array of events");
    CHECK(refusal(R"({"event":)") == "body is not valid JSON");
    CHECK(refusal("[{\"a\":\"\xC3\"}]") == "body is not valid JSON");    // not UTF-8
    CHECK(refusal("[{\"a\":[\"\xC3\"]}]") == "body is not valid JSON");  // nor in a skipped value
    CHECK(refusal("[{\"response\":\"\xFF\"}]") == "body is not valid JSON");
    CHECK(refusal("[{\"a\":\"\\ud83d\"}]") == "body is not valid JSON");
    CHECK(refusal(std::string("[{}]\0", 5)) == "body is not valid JSON");
    CHECK(refusal("[{\"a\":" + deep + "}]") ==
          "body " + detail::too_deep_json(detail::max_json_text_depth));
    // Just within the limit: taken.
    const std::string within = deep.substr(2, deep.size() - 4);
    CHECK(refusal("[{\"a\":" + within + "}]") == "taken");
}

TEST_CASE("text fields: strings as sent, null as empty, other JSON as its text",
          "[webhook][parse]") {
    const auto event = one_event(
        R"("ip":null,"useragent":12,"reason":{"a":1},"url":[1,"x"],"status":true,"category":)"
        R"([null,1,"a"],"tls":"1")");
    CHECK(event.ip.empty());
    CHECK(event.useragent == "12");
    CHECK(event.reason == R"({"a":1})");
    CHECK(event.url == R"([1,"x"])");
    CHECK(event.status == "true");
    CHECK(event.categories == std::vector<std::string>{"null", "1", "a"});  // null is "null" here
    CHECK_FALSE(event.tls.has_value());                                     // a string is not
    CHECK(one_event(R"("tls":0.5)").tls == true);
    CHECK(one_event(R"("tls":0)").tls == false);
    CHECK(one_event(R"("tls":false)").tls == false);
}

TEST_CASE("every key SendGrid documents is known, others are custom args", "[webhook][parse]") {
    using sendgrid_backend::detail::event_key;
    using sendgrid_backend::detail::EventKey;
    CHECK(std::size(sendgrid_backend::detail::documented_event_keys) == 42);  // as in 0.8.0
    for (const auto& entry : sendgrid_backend::detail::documented_event_keys) {
        INFO(entry.name);
        CHECK(event_key(entry.name) == entry.key);
        CHECK(entry.key != EventKey::custom);
    }
    CHECK(event_key("smtp-id") == EventKey::smtp_id);
    CHECK(event_key("type") == EventKey::type);
    CHECK(event_key("response") == EventKey::documented);
    for (std::string_view other :
         {"", "Email", "smtp_id", "emails", "e", "zzz", "aaa", "url_offse", "useragent "}) {
        INFO(other);
        CHECK(event_key(other) == EventKey::custom);
    }
}

namespace json_reader_test {
/// Whether the two trees hold the same types everywhere (an unsigned 1 is not a signed 1).
bool same_types(const nlohmann::json& a, const nlohmann::json& b) {
    if (a.type() != b.type() || a.size() != b.size()) return false;
    if (a.is_object()) {
        for (auto item = a.begin(); item != a.end(); ++item) {
            if (!b.contains(item.key()) || !same_types(item.value(), b.at(item.key())))
                return false;
        }
    } else if (a.is_array()) {
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (!same_types(a[i], b[i])) return false;
        }
    }
    return true;
}
}  // namespace json_reader_test

TEST_CASE("the webhook's JSON reader builds nlohmann's tree and refuses what nlohmann refuses",
          "[webhook][json]") {
    namespace detail = sendgrid_backend::detail;
    std::string deep_ok, deep_too;
    for (int i = 0; i < detail::max_json_text_depth; ++i) deep_ok += '[';
    deep_ok += std::string(static_cast<std::size_t>(detail::max_json_text_depth), ']');
    deep_too = "[" + deep_ok + "]";
    const std::string texts[] = {
        R"([{"a":1,"b":[true,false,null],"c":{"d":"e"}}])",
        "\xEF\xBB\xBF[1]",  // a byte order mark, which nlohmann skips
        "\xEF\xBB[1]",
        R"({"k":1,"k":{"x":2},"k":[3]})",  // a repeated key: the last value stays
        "[-0, 0, -0.0, 1e2, 1E-2, 12.5e+3, 18446744073709551615, 18446744073709551616,"
        " -9223372036854775808, -9223372036854775809, 1e-400, -1e-400, 4.5e-324]",
        "[1e400]",
        "[-1e309]",
        "[01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[+1]",
        "[1e]",
        "[0x10]",
        R"(["\u0000", "\ud83d\ude00", "caf\u00e9", "\/\b\f\n\r\t\"\\"])",
        R"(["\ud83d"])",
        R"(["\ude00"])",
        R"(["\ud83d\u0041"])",
        R"(["\x"])",
        R"(["\u12G4"])",
        "[\"\xC3\xA9\"]",
        "[\"\xC3\"]",
        "[\"\xED\xA0\x80\"]",
        "[\"\xF4\x90\x80\x80\"]",
        "[\"\xC0\xAF\"]",
        "[\"tab\there\"]",
        std::string("[\"a\0b\"]", 7),
        std::string("[1]\0", 4),
        " \t\r\n[ 1 , 2 ] \n",
        "",
        "   ",
        "[1] [2]",
        "[1,]",
        "{\"a\":}",
        "{\"a\" 1}",
        "{1:2}",
        "[tru]",
        "[nul]",
        "[falsey]",
        "\"just a string\"",
        "42",
        "{}",
        "[]",
        "[[[]]]",
        "{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}",
        deep_ok,
        deep_too,
        "[\"unterminated",
        "]" + deep_too,  // more closed than opened: not JSON, whatever follows
        R"([{"a":1,"a":{"x":[1]}}, {"tls":1e-400,"attempt":"7"}, {}])",
        "[{\"a\":\"\xC3\"}]",
        "[{\"response\":[\"\\ud83d\"]}]",
        "[{\"a\":1} x",
        "[{\"a\":1}, 2, {\"a\":}]",
        "[{\"a\":1}, 2, {\"a\":2}]",
        "[{" + std::string(200, ' ') + "}]",
    };
    CHECK_FALSE(detail::text_nests_deeper("]" + deep_too, detail::max_json_text_depth));
    CHECK(detail::text_nests_deeper(deep_too, detail::max_json_text_depth));
    for (const std::string& text : texts) {
        CAPTURE(text);
        std::string nlohmann_problem, our_problem;
        const nlohmann::json theirs = detail::parse_json_text(text, &nlohmann_problem);
        const nlohmann::json ours = detail::read_json_text(text, &our_problem);
        CHECK(ours.is_discarded() == theirs.is_discarded());
        CHECK(our_problem == nlohmann_problem);
        // parse_webhook_events reads without a tree: the same texts refused, the same words.
        std::string expected = "taken";
        if (theirs.is_discarded()) {
            expected = "body " + nlohmann_problem;
        } else if (!theirs.is_array()) {
            expected = "body is not a JSON array of events";
        } else {
            for (std::size_t i = 0; i < theirs.size(); ++i) {
                if (!theirs[i].is_object()) {
                    expected = "body[" + std::to_string(i) + "] is not an event object";
                    break;
                }
            }
        }
        std::string got = "taken";
        std::size_t events = 0;
        try {
            events = parse_webhook_events(text).size();
        } catch (const sendgrid_backend::InvalidWebhookBody& invalid) {
            got = invalid.field() + " " + invalid.reason();
        }
        CHECK(got == expected);
        CHECK(check_refusal(text) == got);
        if (got == "taken") {
            CHECK(events == theirs.size());
            CHECK(sendgrid_backend::detail::WebhookBodyReader::check(text) == events);
        }
        if (ours.is_discarded() || theirs.is_discarded()) continue;
        CHECK(ours == theirs);
        CHECK(ours.dump() == theirs.dump());
        CHECK(json_reader_test::same_types(ours, theirs));
    }
}
