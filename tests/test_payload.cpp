// build_payload, rule by rule: each case compares the whole JSON or the exact field of the error.
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "catch.hpp"
#include "payload_recorder.hpp"

using nlohmann::json;
using sendgrid_backend::Alternative;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::PayloadOptions;
using sendgrid_backend::Personalization;
using test_support::build;
using test_support::invalid_field;

namespace {

// What every payload carries unless the test changes the settings.
json with_defaults(json expected) {
    if (!expected.contains("mail_settings")) {
        expected["mail_settings"] = {{"sandbox_mode", {{"enable", false}}}};
    }
    if (!expected.contains("tracking_settings")) {
        expected["tracking_settings"] = {
            {"click_tracking", {{"enable", true}, {"enable_text", true}}},
            {"open_tracking", {{"enable", true}}}};
    }
    return expected;
}

EmailMessage simple_message() {
    return EmailMessage("Hello", "Plain body", "Shop <shop@example.com>", {"jane@example.com"});
}

}  // namespace

TEST_CASE("a simple message maps to from, subject, one personalization and plain content",
          "[payload]") {
    const json expected = with_defaults(R"({
        "from": {"email": "shop@example.com", "name": "Shop"},
        "subject": "Hello",
        "personalizations": [{"to": [{"email": "jane@example.com"}], "subject": "Hello"}],
        "content": [{"type": "text/plain", "value": "Plain body"}]
    })"_json);
    CHECK(build("simple", simple_message()) == expected);
}

TEST_CASE("build_payload is pure: the same message gives the same JSON", "[payload]") {
    EmailMessage message = simple_message();
    message.attach("", "unnamed bytes", "image/png");
    CHECK(sendgrid_backend::build_payload(message) == sendgrid_backend::build_payload(message));
}

TEST_CASE("addresses: display names, quoted names, bare addresses", "[payload]") {
    EmailMessage message(
        "Hi", "Body", "\"Shop, Inc.\" <shop@example.com>",
        {"Jane Doe <jane@example.com>", "bob@example.org", "\"O'Brien\" <ob@example.net>"});
    const json expected = with_defaults(R"({
        "from": {"email": "shop@example.com", "name": "Shop, Inc."},
        "subject": "Hi",
        "personalizations": [{"to": [
            {"email": "jane@example.com", "name": "Jane Doe"},
            {"email": "bob@example.org"},
            {"email": "ob@example.net", "name": "O'Brien"}], "subject": "Hi"}],
        "content": [{"type": "text/plain", "value": "Body"}]
    })"_json);
    CHECK(build("addresses", message) == expected);
}

TEST_CASE("display names with ',' or ';' are sent as written: quoted, unquoted, escaped",
          "[payload][names]") {
    // The name goes into "name" as the person reads it: no quotes added around it (SendGrid
    // quotes display names in the headers it writes; quotes added here would be shown).
    EmailMessage message("Hi", "Body", "\"Shop, Inc.\" <shop@example.com>",
                         {"\"Doe, John\" <john@example.com>", "Doe; Jane <jane@example.com>",
                          "\"Say \\\"hi\\\", Bob\" <bob@example.com>"},
                         {"Roe, Rick <rick@example.com>"},
                         {"\"Audit; Legal\" <audit@example.com>"});
    message.reply_to = {"\"Help, Desk\" <help@example.com>"};
    const json expected = with_defaults(R"({
        "from": {"email": "shop@example.com", "name": "Shop, Inc."},
        "subject": "Hi",
        "reply_to": {"email": "help@example.com", "name": "Help, Desk"},
        "personalizations": [{
            "to": [{"email": "john@example.com", "name": "Doe, John"},
                   {"email": "jane@example.com", "name": "Doe; Jane"},
                   {"email": "bob@example.com", "name": "Say \"hi\", Bob"}],
            "cc": [{"email": "rick@example.com", "name": "Roe, Rick"}],
            "bcc": [{"email": "audit@example.com", "name": "Audit; Legal"}],
            "subject": "Hi"}],
        "content": [{"type": "text/plain", "value": "Body"}]
    })"_json);
    CHECK(build("names_with_commas", message) == expected);
    const std::string text = sendgrid_backend::serialize_payload(message);
    CHECK(text.find(R"("name":"Say \"hi\", Bob")") != std::string::npos);
}

TEST_CASE(
    "names with ',' or ';' in reply_to_list, a Reply-To header, personalizations and "
    "make_private",
    "[payload][names]") {
    EmailMessage message = simple_message();
    SECTION("reply_to_list") {
        message.reply_to_list = {"\"Doe, John\" <john@example.com>",
                                 "Roe; Rick <rick@example.com>"};
        CHECK(build("names_reply_to_list", message)["reply_to_list"] == R"([
            {"email": "john@example.com", "name": "Doe, John"},
            {"email": "rick@example.com", "name": "Roe; Rick"}])"_json);
    }
    SECTION("a Reply-To header") {
        message.extra_headers = {{"Reply-To", "Help, Desk <help@example.com>"}};
        CHECK(build("names_reply_to_header", message)["reply_to"] ==
              R"({"email": "help@example.com", "name": "Help, Desk"})"_json);
    }
    SECTION("explicit personalizations") {
        message.personalizations.resize(1);
        message.personalizations[0].to = {"Doe, John <john@example.com>"};
        message.personalizations[0].cc = {"\"Roe; Rick\" <rick@example.com>"};
        const json personalization =
            build("names_personalizations", message)["personalizations"][0];
        CHECK(personalization["to"] ==
              R"([{"email": "john@example.com", "name": "Doe, John"}])"_json);
        CHECK(personalization["cc"] ==
              R"([{"email": "rick@example.com", "name": "Roe; Rick"}])"_json);
    }
    SECTION("make_private") {
        message.make_private = true;
        message.to = {"\"Doe, John\" <john@example.com>", "Roe, Rick <rick@example.com>"};
        const json payload = build("names_make_private", message);
        REQUIRE(payload["personalizations"].size() == 2);
        CHECK(payload["personalizations"][1]["to"] ==
              R"([{"email": "rick@example.com", "name": "Roe, Rick"}])"_json);
    }
}

TEST_CASE("CR, LF or NUL in a display name with ',' is refused in every list, naming the entry",
          "[payload][names][invalid]") {
    const std::string crlf = "\"Doe, John\r\nBcc: x@evil.example\" <john@example.com>";
    const std::string lf = "Doe, John\n <john@example.com>";
    const std::string nul = "\"Doe, John" + std::string(1, '\0') + "\" <john@example.com>";
    for (const std::string& bad : {crlf, lf, nul}) {
        INFO(bad);
        EmailMessage message = simple_message();
        message.to = {"ok@example.com", bad};
        CHECK(invalid_field(message) == "to[1]");
        message.to = {"ok@example.com"};
        message.cc = {"c@example.com", "", bad};
        CHECK(invalid_field(message) == "cc[2]");
        message.cc.clear();
        message.bcc = {bad};
        CHECK(invalid_field(message) == "bcc[0]");
        message.bcc.clear();
        message.from_email = bad;
        CHECK(invalid_field(message) == "from_email");
        message.from_email = "shop@example.com";
        message.reply_to = {bad};
        CHECK(invalid_field(message) == "reply_to[0]");
        message.reply_to.clear();
        message.reply_to_list = {"a@example.com", bad};
        CHECK(invalid_field(message) == "reply_to_list[1]");
        message.reply_to_list.clear();
        message.extra_headers = {{"Reply-To", bad}};
        CHECK(invalid_field(message) == "extra_headers[\"Reply-To\"]");
        message.extra_headers.clear();
        message.personalizations.resize(1);
        message.personalizations[0].to = {"p@example.com"};
        message.personalizations[0].cc = {bad};
        CHECK(invalid_field(message) == "personalizations[0].cc[0]");
    }
}

TEST_CASE("cc and bcc: blank entries skipped, repeats within each dropped case-insensitively",
          "[payload]") {
    EmailMessage message = simple_message();
    message.cc = {"c1@example.com", "", "C1@Example.com", "  ", "c2@example.com"};
    message.bcc = {"b@example.com", "B@EXAMPLE.COM"};
    const json payload = build("cc_bcc", message);
    CHECK(payload["personalizations"][0]["cc"] ==
          R"([{"email": "c1@example.com"}, {"email": "c2@example.com"}])"_json);
    CHECK(payload["personalizations"][0]["bcc"] == R"([{"email": "b@example.com"}])"_json);
}

TEST_CASE("a Reply-To extra header becomes reply_to and is not sent as a header", "[payload]") {
    EmailMessage message = simple_message();
    message.extra_headers = {{"reply-to", "Support <help@example.com>"}, {"X-Campaign", "fall"}};
    const json payload = build("reply_to_header", message);
    CHECK(payload["reply_to"] == R"({"email": "help@example.com", "name": "Support"})"_json);
    CHECK(payload["personalizations"][0]["headers"] == R"({"X-Campaign": "fall"})"_json);
}

TEST_CASE("reply_to: one address; equal to the header is fine; conflicts are errors", "[payload]") {
    EmailMessage message = simple_message();
    message.reply_to = {"help@example.com"};
    CHECK(build("reply_to_field", message)["reply_to"] == R"({"email": "help@example.com"})"_json);

    message.extra_headers = {{"Reply-To", "help@example.com"}};
    CHECK(invalid_field(message) == "<no error>");

    message.extra_headers = {{"Reply-To", "other@example.com"}};
    CHECK(invalid_field(message) == "reply_to");

    message.extra_headers.clear();
    message.reply_to = {"a@example.com", "b@example.com"};
    CHECK(invalid_field(message) == "reply_to");
}

TEST_CASE("reply_to_list is sent as is and cannot go with reply_to", "[payload]") {
    EmailMessage message = simple_message();
    message.reply_to_list = {"A <a@example.com>", "b@example.com"};
    CHECK(build("reply_to_list", message)["reply_to_list"] ==
          R"([{"email": "a@example.com", "name": "A"}, {"email": "b@example.com"}])"_json);

    message.reply_to = {"c@example.com"};
    CHECK(invalid_field(message) == "reply_to_list");
    message.reply_to.clear();
    message.reply_to_list.push_back("A@example.com");
    CHECK(invalid_field(message) == "reply_to_list[2]");
}

TEST_CASE("extra headers go into every personalization", "[payload]") {
    EmailMessage message = simple_message();
    message.to = {"a@example.com", "b@example.com"};
    message.make_private = true;
    message.extra_headers = {{"X-Tag", "1"}, {"List-Unsubscribe", "<mailto:u@example.com>"}};
    const json payload = build("headers_private", message);
    REQUIRE(payload["personalizations"].size() == 2);
    for (const auto& personalization : payload["personalizations"]) {
        CHECK(personalization["headers"] ==
              R"({"X-Tag": "1", "List-Unsubscribe": "<mailto:u@example.com>"})"_json);
    }
}

TEST_CASE("attachments: base64, type, filename; guessed type; inline parts", "[payload]") {
    EmailMessage message = simple_message();
    message.attach("report.pdf", "%PDF-1.4", "application/pdf");
    message.attach("photo.JPG", std::string("\xff\xd8\xff\x00", 4));
    message.attach("data.unknownext", "xyz");
    message.attach_inline("<logo@shop>", "logo.png", "PNG", "image/png");
    const json payload = build("attachments", message);
    CHECK(payload["attachments"] == R"([
        {"content": "JVBERi0xLjQ=", "filename": "report.pdf", "type": "application/pdf"},
        {"content": "/9j/AA==", "filename": "photo.JPG", "type": "image/jpeg"},
        {"content": "eHl6", "filename": "data.unknownext", "type": "application/octet-stream"},
        {"content": "UE5H", "filename": "logo.png", "type": "image/png",
         "content_id": "logo@shop", "disposition": "inline"}
    ])"_json);
}

TEST_CASE("an unnamed part gets a generated part-<hex>.<ext> name", "[payload]") {
    EmailMessage message = simple_message();
    message.attach("", "first", "image/png");
    message.attach("", "second", "text/calendar");
    const json payload = build("unnamed_parts", message);
    const std::string png = payload["attachments"][0]["filename"];
    const std::string ics = payload["attachments"][1]["filename"];
    CHECK_THAT(png, Catch::Matches("part-[0-9a-f]{32}\\.png"));
    CHECK_THAT(ics, Catch::Matches("part-[0-9a-f]{32}\\.ics"));
    CHECK(png.substr(5, 32) != ics.substr(5, 32));
}

TEST_CASE("content order: plain, AMP, html, then other types", "[payload]") {
    EmailMessage message = simple_message();
    message.attach_alternative("BEGIN:VCALENDAR", "text/calendar");
    message.attach_alternative("<p>html</p>", "text/html");
    message.attach_alternative("<html amp4email></html>", "text/x-amp-html");
    CHECK(build("content_order", message)["content"] == R"([
        {"type": "text/plain", "value": "Plain body"},
        {"type": "text/x-amp-html", "value": "<html amp4email></html>"},
        {"type": "text/html", "value": "<p>html</p>"},
        {"type": "text/calendar", "value": "BEGIN:VCALENDAR"}
    ])"_json);
}

TEST_CASE("content parts of the same rank keep the order they were given in", "[payload]") {
    EmailMessage message = simple_message();
    message.attach_alternative("b,c", "text/csv");
    message.attach_alternative("<p>html</p>", "text/html");
    message.attach_alternative("BEGIN:VCALENDAR", "text/calendar");
    message.attach_alternative("x: 1", "text/x-yaml");
    CHECK(build("content_stable_order", message)["content"] == R"([
        {"type": "text/plain", "value": "Plain body"},
        {"type": "text/html", "value": "<p>html</p>"},
        {"type": "text/csv", "value": "b,c"},
        {"type": "text/calendar", "value": "BEGIN:VCALENDAR"},
        {"type": "text/x-yaml", "value": "x: 1"}
    ])"_json);
}

TEST_CASE("an empty body becomes a single space next to an alternative", "[payload]") {
    EmailMessage message = simple_message();
    message.body.clear();
    message.attach_alternative("<p>only html</p>", "text/html");
    CHECK(build("empty_body", message)["content"] == R"([
        {"type": "text/plain", "value": " "},
        {"type": "text/html", "value": "<p>only html</p>"}
    ])"_json);
}

TEST_CASE("an html content_subtype sends a blank plain part first", "[payload]") {
    EmailMessage message = simple_message();
    message.body = "<b>bold</b>";
    message.content_subtype = "html";
    CHECK(build("html_subtype", message)["content"] == R"([
        {"type": "text/plain", "value": " "},
        {"type": "text/html", "value": "<b>bold</b>"}
    ])"_json);
}

TEST_CASE("with a template_id no top-level subject or content is sent", "[payload]") {
    EmailMessage message = simple_message();
    message.template_id = "d-0123456789abcdef";
    message.dynamic_template_data = json{{"name", "Jane"}, {"items", {1, 2}}};
    const json expected = with_defaults(R"({
        "from": {"email": "shop@example.com", "name": "Shop"},
        "template_id": "d-0123456789abcdef",
        "personalizations": [{"to": [{"email": "jane@example.com"}], "subject": "Hello",
                              "dynamic_template_data": {"name": "Jane", "items": [1, 2]}}]
    })"_json);
    CHECK(build("template", message) == expected);

    SECTION("an empty body is fine with a template") {
        message.body.clear();
        CHECK(invalid_field(message) == "<no error>");
    }
}

TEST_CASE("dynamic_template_data nested deeper than 256 levels is refused, naming where",
          "[payload]") {
    // nlohmann copies and writes JSON recursively: 100,000 levels would overflow the stack.
    const auto nested = [](int depth) {  // {"x":[[...]]}, `depth` levels in all
        json data = json::object();
        data["x"] = json::parse(std::string(depth - 1, '[') + std::string(depth - 1, ']'));
        return data;
    };
    std::string deepest_allowed = R"(dynamic_template_data["x"])";
    for (int level = 2; level < 256; ++level) deepest_allowed += "[0]";
    EmailMessage message = simple_message();
    message.template_id = "d-0123456789abcdef";
    message.dynamic_template_data = nested(256);
    CHECK(invalid_field(message) == "<no error>");
    message.dynamic_template_data = nested(257);
    CHECK(invalid_field(message) == deepest_allowed + "[0]");
    message.dynamic_template_data = nested(100'000);
    CHECK(invalid_field(message) == deepest_allowed + "[0]");

    Personalization own;
    own.to = {"jane@example.com"};
    own.dynamic_template_data = nested(100'000);
    message.dynamic_template_data.reset();
    message.personalizations.push_back(std::move(own));
    CHECK(invalid_field(message) == "personalizations[0]." + deepest_allowed + "[0]");
}

TEST_CASE("legacy substitutions, custom_args and send_at go into the personalization",
          "[payload]") {
    EmailMessage message = simple_message();
    message.substitutions = {{"-name-", "Jane"}};
    message.custom_args = {{"order", "42"}};
    message.send_at = 1700000000;
    const json personalization = build("subs_args", message)["personalizations"][0];
    CHECK(personalization == R"({
        "to": [{"email": "jane@example.com"}], "subject": "Hello",
        "substitutions": {"-name-": "Jane"}, "custom_args": {"order": "42"},
        "send_at": 1700000000
    })"_json);
}

TEST_CASE("explicit personalizations: missing fields are filled from the message", "[payload]") {
    EmailMessage message = simple_message();
    message.cc = {"cc@example.com"};
    message.bcc = {"bcc@example.com"};
    message.custom_args = {{"batch", "7"}};
    message.substitutions = {{"-x-", "y"}};
    message.dynamic_template_data = json{{"greeting", "hi"}};
    message.extra_headers = {{"X-Shared", "1"}};

    Personalization own;
    own.to = {"Own <own@example.com>"};
    own.cc = {"owncc@example.com"};
    own.subject = "Own subject";
    own.custom_args = {{"batch", "8"}};
    own.headers = {{"X-Own", "2"}};
    own.send_at = 1700000001;
    Personalization filled;
    filled.to = {"filled@example.com"};
    message.personalizations = {own, filled};

    const json payload = build("explicit_personalizations", message);
    CHECK(payload["personalizations"] == R"([
        {"to": [{"email": "own@example.com", "name": "Own"}],
         "cc": [{"email": "owncc@example.com"}], "bcc": [{"email": "bcc@example.com"}],
         "subject": "Own subject", "headers": {"X-Shared": "1", "X-Own": "2"},
         "substitutions": {"-x-": "y"}, "dynamic_template_data": {"greeting": "hi"},
         "custom_args": {"batch": "8"}, "send_at": 1700000001},
        {"to": [{"email": "filled@example.com"}],
         "cc": [{"email": "cc@example.com"}], "bcc": [{"email": "bcc@example.com"}],
         "subject": "Hello", "headers": {"X-Shared": "1"},
         "substitutions": {"-x-": "y"}, "dynamic_template_data": {"greeting": "hi"},
         "custom_args": {"batch": "7"}}
    ])"_json);

    SECTION("each explicit personalization must have a 'to'") {
        message.personalizations[1].to.clear();
        CHECK(invalid_field(message) == "personalizations[1].to");
    }
    SECTION("errors inside a personalization name its index") {
        message.personalizations[1].cc = {"not-an-address"};
        CHECK(invalid_field(message) == "personalizations[1].cc[0]");
    }
}

TEST_CASE("make_private: one personalization per 'to'", "[payload]") {
    EmailMessage message = simple_message();
    message.to = {"A <a@example.com>", "b@example.com"};
    message.bcc = {"audit@example.com"};
    message.make_private = true;
    CHECK(build("make_private", message)["personalizations"] == R"([
        {"to": [{"email": "a@example.com", "name": "A"}], "bcc": [{"email": "audit@example.com"}],
         "subject": "Hello"},
        {"to": [{"email": "b@example.com"}], "bcc": [{"email": "audit@example.com"}],
         "subject": "Hello"}
    ])"_json);
    message.to.push_back("broken");
    CHECK(invalid_field(message) == "to[2]");
}

TEST_CASE("categories, asm and ip_pool_name", "[payload]") {
    EmailMessage message = simple_message();
    message.categories = {"welcome", "onboarding"};
    message.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{12, {12, 13}};
    message.ip_pool_name = "transactional";
    const json payload = build("categories_asm_pool", message);
    CHECK(payload["categories"] == R"(["welcome", "onboarding"])"_json);
    CHECK(payload["asm"] == R"({"group_id": 12, "groups_to_display": [12, 13]})"_json);
    CHECK(payload["ip_pool_name"] == "transactional");

    message.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{34, {}};
    CHECK(build("asm_group_only", message)["asm"] == R"({"group_id": 34})"_json);
}

TEST_CASE("settings: sandbox mode and tracking, and per-message overrides", "[payload]") {
    EmailMessage message = simple_message();
    PayloadOptions options;
    options.sandbox_mode = true;
    options.track_email_opens = false;
    options.track_clicks_html = false;
    options.track_clicks_plain = true;
    json payload = build("settings", message, options);
    CHECK(payload["mail_settings"] == R"({"sandbox_mode": {"enable": true}})"_json);
    CHECK(payload["tracking_settings"] == R"({
        "open_tracking": {"enable": false},
        "click_tracking": {"enable": false, "enable_text": true}})"_json);

    message.tracking_settings.track_email_opens = true;
    message.tracking_settings.track_clicks_plain = false;
    message.mail_settings.bypass_list_management = true;
    payload = build("settings_overridden", message, options);
    CHECK(payload["tracking_settings"] == R"({
        "open_tracking": {"enable": true},
        "click_tracking": {"enable": false, "enable_text": false}})"_json);
    CHECK(payload["mail_settings"] == R"({"sandbox_mode": {"enable": true},
        "bypass_list_management": {"enable": true}})"_json);
}

TEST_CASE("an empty subject is omitted, not sent as an empty string", "[payload]") {
    EmailMessage message = simple_message();
    message.subject.clear();
    const json payload = build("empty_subject", message);
    CHECK_FALSE(payload.contains("subject"));
    CHECK_FALSE(payload["personalizations"][0].contains("subject"));
}

TEST_CASE("a kitchen-sink message with every field", "[payload]") {
    EmailMessage message("Kitchen sink", "Plain", "Shop <shop@example.com>",
                         {"Jane <jane@example.com>", "bob@example.com"}, {"cc@example.com"},
                         {"bcc@example.com"});
    message.reply_to = {"help@example.com"};
    message.extra_headers = {{"X-Campaign", "sink"}};
    message.attach("a.txt", "hello", "text/plain");
    message.attach_inline("cid1", "i.png", "PNG", "");
    message.attach_alternative("<p>HTML</p>", "text/html");
    message.substitutions = {{"-n-", "1"}};
    message.custom_args = {{"k", "v"}};
    message.categories = {"c1"};
    message.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{5, {5}};
    message.ip_pool_name = "pool";
    message.send_at = 1800000000;
    message.mail_settings.bypass_spam_management = false;
    message.mail_settings.bypass_bounce_management = true;
    message.mail_settings.bypass_unsubscribe_management = false;
    message.mail_settings.footer = sendgrid_backend::Footer{true, "footer", "<p>footer</p>"};
    message.tracking_settings.open_tracking_substitution_tag = "%open%";
    message.tracking_settings.subscription_tracking =
        sendgrid_backend::SubscriptionTracking{true, "unsub", "<a>unsub</a>", "[unsub]"};
    message.tracking_settings.ganalytics =
        sendgrid_backend::GoogleAnalytics{true, "src", "email", "", "", "fall"};

    const json expected = R"({
        "from": {"email": "shop@example.com", "name": "Shop"},
        "subject": "Kitchen sink",
        "reply_to": {"email": "help@example.com"},
        "personalizations": [{
            "to": [{"email": "jane@example.com", "name": "Jane"}, {"email": "bob@example.com"}],
            "cc": [{"email": "cc@example.com"}], "bcc": [{"email": "bcc@example.com"}],
            "subject": "Kitchen sink", "headers": {"X-Campaign": "sink"},
            "substitutions": {"-n-": "1"}, "custom_args": {"k": "v"}, "send_at": 1800000000}],
        "content": [{"type": "text/plain", "value": "Plain"},
                    {"type": "text/html", "value": "<p>HTML</p>"}],
        "attachments": [
            {"content": "aGVsbG8=", "filename": "a.txt", "type": "text/plain"},
            {"content": "UE5H", "filename": "i.png", "type": "image/png",
             "content_id": "cid1", "disposition": "inline"}],
        "categories": ["c1"],
        "asm": {"group_id": 5, "groups_to_display": [5]},
        "ip_pool_name": "pool",
        "mail_settings": {
            "sandbox_mode": {"enable": false},
            "bypass_spam_management": {"enable": false},
            "bypass_bounce_management": {"enable": true},
            "bypass_unsubscribe_management": {"enable": false},
            "footer": {"enable": true, "text": "footer", "html": "<p>footer</p>"}},
        "tracking_settings": {
            "open_tracking": {"enable": true, "substitution_tag": "%open%"},
            "click_tracking": {"enable": true, "enable_text": true},
            "subscription_tracking": {"enable": true, "text": "unsub", "html": "<a>unsub</a>",
                                      "substitution_tag": "[unsub]"},
            "ganalytics": {"enable": true, "utm_source": "src", "utm_medium": "email",
                           "utm_campaign": "fall"}}
    })"_json;
    CHECK(build("kitchen_sink", message) == expected);
}

// ---------------------------------------------------------------------------------------------
// Validation: each rule refuses the message with InvalidMessage naming the field.

TEST_CASE("recipients: none, malformed, duplicates, several addresses in one entry",
          "[payload][invalid]") {
    EmailMessage message = simple_message();

    SECTION("no recipients at all") {
        message.to.clear();
        CHECK(invalid_field(message) == "to");
    }
    SECTION("only cc is not enough: SendGrid requires a 'to'") {
        message.to.clear();
        message.cc = {"cc@example.com"};
        CHECK(invalid_field(message) == "to");
    }
    SECTION("a malformed address names its position") {
        message.to = {"ok@example.com", "not an address"};
        CHECK(invalid_field(message) == "to[1]");
    }
    SECTION("a blank 'to' entry is refused") {
        message.to = {"ok@example.com", ""};
        CHECK(invalid_field(message) == "to[1]");
    }
    SECTION("the same address in to and cc") {
        message.cc = {"JANE@example.com"};
        CHECK(invalid_field(message) == "cc[0]");
    }
    SECTION("the same address in cc and bcc") {
        message.cc = {"x@example.com"};
        message.bcc = {"x@example.com"};
        CHECK(invalid_field(message) == "bcc[0]");
    }
    SECTION("the same address twice in to") {
        message.to = {"a@example.com", "A@example.com"};
        CHECK(invalid_field(message) == "to[1]");
    }
    SECTION("opt-in de-duplication drops repeats instead") {
        message.cc = {"jane@example.com", "x@example.com"};
        message.bcc = {"x@example.com", "y@example.com"};
        PayloadOptions options;
        options.deduplicate_recipients = true;
        const json personalization = build("deduplicated", message, options)["personalizations"][0];
        CHECK(personalization["cc"] == R"([{"email": "x@example.com"}])"_json);
        CHECK(personalization["bcc"] == R"([{"email": "y@example.com"}])"_json);
    }
    SECTION("a list pasted into one entry: refused wherever an address goes") {
        const std::string two = "ann@example.com, Bob <bob@example.com>";
        message.to = {"ok@example.com", two};
        CHECK(invalid_field(message) == "to[1]");
        message.to = {"ok@example.com"};
        message.bcc = {"Ann <ann@example.com>; Bob <bob@example.com>"};
        CHECK(invalid_field(message) == "bcc[0]");
        message.bcc.clear();
        message.from_email = two;
        CHECK(invalid_field(message) == "from_email");
        message.from_email = "shop@example.com";
        message.reply_to = {two};
        CHECK(invalid_field(message) == "reply_to[0]");
    }
    SECTION("an empty or malformed sender") {
        message.from_email = "";
        CHECK(invalid_field(message) == "from_email");
        message.from_email = "shop@";
        CHECK(invalid_field(message) == "from_email");
    }
}

TEST_CASE("a repeated recipient's error names both lists", "[payload][invalid]") {
    // The first list is named in the reason: in an explicit personalization its name is built
    // from the personalization's own prefix (a view of it must outlive the whole check).
    auto refusal = [](const EmailMessage& message) {
        try {
            sendgrid_backend::serialize_payload(message);
        } catch (const sendgrid_backend::InvalidMessage& invalid) {
            return invalid.field() + ": " + invalid.reason();
        }
        return std::string("<no error>");
    };
    auto has = [](const std::string& text, const std::string& part) {
        INFO(text);
        return text.find(part) != std::string::npos;
    };
    EmailMessage message = simple_message();
    message.cc = {"JANE@example.com"};
    CHECK(has(refusal(message), "cc[0]: 'JANE@example.com' is already in to;"));

    message = simple_message();
    message.personalizations.resize(2);
    message.personalizations[0].to = {"a@example.com"};
    message.personalizations[1].to = {"b@example.com"};
    message.personalizations[1].cc = {"x@example.com"};
    message.personalizations[1].bcc = {"X@example.com"};
    CHECK(has(refusal(message),
              "personalizations[1].bcc[0]: 'X@example.com' is already in personalizations[1].cc;"));
    message.personalizations[1].bcc.clear();
    message.personalizations[1].cc = {"B@example.com"};
    CHECK(has(refusal(message),
              "personalizations[1].cc[0]: 'B@example.com' is already in personalizations[1].to;"));
    // cc from the message, the 'to' of the personalization.
    message.personalizations[1].cc.clear();
    message.cc = {"b@example.com"};
    CHECK(has(refusal(message), "cc[0]: 'b@example.com' is already in personalizations[1].to;"));
}

TEST_CASE("limits: 1000 personalizations, 1000 recipients", "[payload][invalid]") {
    EmailMessage message = simple_message();
    auto addresses = [](std::size_t count, const std::string& prefix) {
        std::vector<std::string> list;
        for (std::size_t i = 0; i < count; ++i)
            list.push_back(prefix + std::to_string(i) + "@example.com");
        return list;
    };

    SECTION("1000 recipients pass, 1001 do not") {
        message.to = addresses(600, "to");
        message.cc = addresses(300, "cc");
        message.bcc = addresses(100, "bcc");
        CHECK(invalid_field(message) == "<no error>");
        message.bcc.push_back("one-more@example.com");
        CHECK(invalid_field(message) == "to");
    }
    SECTION("make_private over 1000 addresses") {
        message.make_private = true;
        message.to = addresses(1000, "p");
        CHECK(invalid_field(message) == "<no error>");
        message.to.push_back("x@example.com");
        CHECK(invalid_field(message) == "to");
    }
    SECTION("1001 explicit personalizations") {
        message.personalizations.resize(1001);
        for (std::size_t i = 0; i < 1001; ++i) {
            message.personalizations[i].to = {"p" + std::to_string(i) + "@example.com"};
        }
        CHECK(invalid_field(message) == "personalizations");
    }
}

TEST_CASE("categories: at most 10, 255 characters, ASCII, unique", "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.categories = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"};
    CHECK(invalid_field(message) == "<no error>");
    message.categories.push_back("11");
    CHECK(invalid_field(message) == "categories");

    message.categories = {"ok", std::string(256, 'x')};
    CHECK(invalid_field(message) == "categories[1]");
    message.categories = {std::string(255, 'x')};
    CHECK(invalid_field(message) == "<no error>");
    message.categories = {"caf\xc3\xa9"};
    CHECK(invalid_field(message) == "categories[0]");
    message.categories = {"a", "b", "a"};
    CHECK(invalid_field(message) == "categories[2]");
}

TEST_CASE("reserved headers are refused, in any case", "[payload][invalid]") {
    const char* reserved[] = {"x-sg-id",      "X-SG-EID",
                              "Received",     "DKIM-Signature",
                              "content-type", "Content-Transfer-Encoding",
                              "TO",           "From",
                              "subject",      "Cc",
                              "BCC"};
    for (const char* name : reserved) {
        EmailMessage message = simple_message();
        message.extra_headers = {{name, "value"}};
        INFO(name);
        CHECK(invalid_field(message) == std::string("extra_headers[\"") + name + "\"]");
    }
    EmailMessage message = simple_message();
    Personalization p;
    p.to = {"a@example.com"};
    p.headers = {{"Subject", "sneaky"}};
    message.personalizations = {p};
    CHECK(invalid_field(message) == "personalizations[0].headers[\"Subject\"]");
}

TEST_CASE("line breaks are refused where they would inject headers", "[payload][invalid]") {
    EmailMessage message = simple_message();
    SECTION("subject") {
        message.subject = "Hi\r\nBcc: victim@example.com";
        CHECK(invalid_field(message) == "subject");
    }
    SECTION("header name and value") {
        message.extra_headers = {{"X-A\nB", "v"}};
        CHECK(invalid_field(message) == "extra_headers[\"X-A\nB\"]");
        message.extra_headers = {{"X-Tag", "v\r\nBcc: x@example.com"}};
        CHECK(invalid_field(message) == "extra_headers[\"X-Tag\"]");
    }
    SECTION("address") {
        message.to = {"jane@example.com\nBcc: x@example.com"};
        CHECK(invalid_field(message) == "to[0]");
    }
    SECTION("attachment filename, type and content_id") {
        message.attach("a\r\n.txt", "x", "text/plain");
        CHECK(invalid_field(message) == "attachments[0].filename");
        message.attachments[0] = {"a.txt", "x", "text/plain\n", ""};
        CHECK(invalid_field(message) == "attachments[0].mimetype");
        message.attachments[0] = {"a.txt", "x", "text/plain", "<id\n>"};
        CHECK(invalid_field(message) == "attachments[0].content_id");
    }
    SECTION("personalization subject") {
        Personalization p;
        p.to = {"a@example.com"};
        p.subject = "x\ny";
        message.personalizations = {p};
        CHECK(invalid_field(message) == "personalizations[0].subject");
    }
}

TEST_CASE("NUL bytes are refused in headers and mail text (SMTP cannot carry them)",
          "[payload][invalid]") {
    const std::string nul("a\0b", 3);
    EmailMessage message = simple_message();
    SECTION("subject") {
        message.subject = nul;
        CHECK(invalid_field(message) == "subject");
    }
    SECTION("header name and value") {
        message.extra_headers = {{"X-Tag", nul}};
        CHECK(invalid_field(message) == "extra_headers[\"X-Tag\"]");
    }
    SECTION("a display name") {
        message.to = {"Jane" + nul + " <jane@example.com>"};
        CHECK(invalid_field(message) == "to[0]");
        message.to = {"jane@example.com"};
        message.from_email = "Shop" + nul + " <shop@example.com>";
        CHECK(invalid_field(message) == "from_email");
    }
    SECTION("attachment filename and category") {
        message.attach("a" + nul + ".txt", "x", "text/plain");
        CHECK(invalid_field(message) == "attachments[0].filename");
        message.attachments.clear();
        message.categories = {nul};
        CHECK(invalid_field(message) == "categories[0]");
    }
    SECTION("body") {
        message.body = nul;
        CHECK(invalid_field(message) == "body");
    }
    SECTION("an alternative") {
        message.attach_alternative("<p>" + nul + "</p>", "text/html");
        CHECK(invalid_field(message) == "alternatives[0].content");
    }
    SECTION("a footer") {
        sendgrid_backend::MailSettings settings;
        settings.footer = sendgrid_backend::Footer{true, nul, "<p>x</p>"};
        message.mail_settings = settings;
        CHECK(invalid_field(message) == "mail_settings.footer.text");
    }
    SECTION("binary attachments still pass: they travel base64-encoded") {
        message.attach("a.bin", nul, "application/octet-stream");
        CHECK(invalid_field(message) == "<no error>");
    }
}

TEST_CASE("custom_args and substitutions: at most 10,000 bytes per personalization",
          "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.custom_args = {{"big", std::string(9980, 'x')}};
    CHECK(invalid_field(message) == "<no error>");
    message.custom_args = {{"big", std::string(10000, 'x')}};
    CHECK(invalid_field(message) == "custom_args");
    message.custom_args.clear();
    message.substitutions = {{"-big-", std::string(10000, 'x')}};
    CHECK(invalid_field(message) == "substitutions");
}

TEST_CASE("asm needs a group_id and at most 25 groups to display", "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{};
    CHECK(invalid_field(message) == "unsubscribe_group.group_id");
    message.unsubscribe_group->group_id = 1;
    message.unsubscribe_group->groups_to_display.assign(25, 1);
    CHECK(invalid_field(message) == "<no error>");
    message.unsubscribe_group->groups_to_display.push_back(1);
    CHECK(invalid_field(message) == "unsubscribe_group.groups_to_display");
}

TEST_CASE("ip_pool_name: 2 to 64 characters", "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.ip_pool_name = "a";
    CHECK(invalid_field(message) == "ip_pool_name");
    message.ip_pool_name = "ab";
    CHECK(invalid_field(message) == "<no error>");
    message.ip_pool_name = std::string(64, 'p');
    CHECK(invalid_field(message) == "<no error>");
    message.ip_pool_name = std::string(65, 'p');
    CHECK(invalid_field(message) == "ip_pool_name");
}

TEST_CASE("batch_id: sent at the top level; SendGrid's characters only", "[payload][invalid]") {
    EmailMessage message = simple_message();
    CHECK_FALSE(build_payload(message).contains("batch_id"));  // empty: none
    message.batch_id = "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi-_9";
    CHECK(invalid_field(message) == "<no error>");
    CHECK(build_payload(message)["batch_id"] == "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi-_9");
    for (const std::string& bad :
         std::vector<std::string>{"a/b", "a b", "../x", "id?x=1", std::string(257, 'b')}) {
        message.batch_id = bad;
        CHECK(invalid_field(message) == "batch_id");
    }
    message.batch_id = std::string(256, 'b');
    CHECK(invalid_field(message) == "<no error>");
}

TEST_CASE("content: empty without a template, empty alternatives, repeated types",
          "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.body.clear();
    CHECK(invalid_field(message) == "body");

    message.body = "text";
    message.attach_alternative("", "text/html");
    CHECK(invalid_field(message) == "alternatives[0].content");

    message.alternatives = {Alternative{"<p>a</p>", "text/html"},
                            Alternative{"<p>b</p>", "text/html"}};
    CHECK(invalid_field(message) == "alternatives[1]");
}

TEST_CASE("an empty attachment and a payload over 30 MB are refused", "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.attach("empty.txt", "");
    CHECK(invalid_field(message) == "attachments[0].content");

    message.attachments.clear();
    message.attach("big.bin", std::string(23'000'000, 'x'));  // 30.67 MB once base64-encoded
    CHECK(invalid_field(message) == "attachments");
    message.attachments[0].content.resize(22'000'000);  // 29.3 MB
    CHECK(invalid_field(message) == "<no error>");
}

TEST_CASE("invalid UTF-8 anywhere is an InvalidMessage naming the field", "[payload][invalid]") {
    const std::string bad = "caf\xc3";  // truncated sequence
    EmailMessage message = simple_message();
    SECTION("body") {
        message.body = bad;
        CHECK(invalid_field(message) == "body");
    }
    SECTION("subject") {
        message.subject = bad;
        CHECK(invalid_field(message) == "subject");
    }
    SECTION("header value") {
        message.extra_headers = {{"X-Tag", bad}};
        CHECK(invalid_field(message) == "extra_headers[\"X-Tag\"]");
    }
    SECTION("custom arg value") {
        message.custom_args = {{"k", bad}};
        CHECK(invalid_field(message) == "custom_args[\"k\"]");
    }
    SECTION("dynamic_template_data deep inside") {
        message.dynamic_template_data = json{{"items", {json{{"name", bad}}}}};
        CHECK(invalid_field(message) == "dynamic_template_data[\"items\"][0][\"name\"]");
    }
    SECTION("attachment filename") {
        message.attach(bad, "x", "text/plain");
        CHECK(invalid_field(message) == "attachments[0].filename");
    }
    SECTION("address") {
        message.to = {"Caf\xe9 <jane@example.com>"};  // Latin-1, not UTF-8
        CHECK(invalid_field(message) == "to[0]");
    }
    SECTION("the error text is itself valid UTF-8") {
        message.body = bad;
        try {
            sendgrid_backend::build_payload(message);
            FAIL("accepted invalid UTF-8");
        } catch (const sendgrid_backend::InvalidMessage& e) {
            CHECK(sendgrid_backend::detail::is_valid_utf8(e.what()));
            CHECK(std::string(e.what()).rfind("[sendgrid_backend.invalid_message] body: ", 0) == 0);
        }
    }
}

TEST_CASE("dynamic_template_data must be an object; send_at must not be negative",
          "[payload][invalid]") {
    EmailMessage message = simple_message();
    message.dynamic_template_data = json::array({1, 2});
    CHECK(invalid_field(message) == "dynamic_template_data");
    message.dynamic_template_data.reset();
    message.send_at = -5;
    CHECK(invalid_field(message) == "send_at");
}

TEST_CASE("UTF-8 text is carried through untouched", "[payload]") {
    EmailMessage message("Grüße ☃", "Héllo wörld 🎉", "Ünïcode <u@example.com>",
                         {"Zoë <zoe@example.com>"});
    const json payload = build("utf8", message);
    CHECK(payload["subject"] == "Grüße ☃");
    CHECK(payload["from"]["name"] == "Ünïcode");
    CHECK(payload["personalizations"][0]["to"][0]["name"] == "Zoë");
    CHECK(payload["content"][0]["value"] == "Héllo wörld 🎉");
}

TEST_CASE("make_private without cc or bcc: each personalization is the envelope plus one 'to'",
          "[payload]") {
    EmailMessage message = simple_message();
    message.to = {"A <a@example.com>", "b@example.com"};
    message.make_private = true;
    message.custom_args = {{"campaign", "fall"}};
    message.extra_headers = {{"X-Tag", "1"}};
    CHECK(build("make_private_plain", message)["personalizations"] == R"([
        {"to": [{"email": "a@example.com", "name": "A"}], "subject": "Hello",
         "custom_args": {"campaign": "fall"}, "headers": {"X-Tag": "1"}},
        {"to": [{"email": "b@example.com"}], "subject": "Hello",
         "custom_args": {"campaign": "fall"}, "headers": {"X-Tag": "1"}}
    ])"_json);
    message.to = {"ok@example.com", "ann@example.com, Doe <j@example.com>"};
    CHECK(invalid_field(message) == "to[1]");
    message.to = {"ok@example.com", "x@example.com", "broken"};
    CHECK(invalid_field(message) == "to[2]");
}
