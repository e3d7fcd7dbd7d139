// EmailMessage <-> JSON text: every field survives the round trip (the payload built from the
// copy is the payload built from the original), and anything malformed is refused by name.
#include <sendgrid_backend/message_json.hpp>
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <string>

#include "catch.hpp"

using sendgrid_backend::deserialize_message;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::InvalidMessage;
using sendgrid_backend::serialize_message;

namespace {

EmailMessage kitchen_sink() {
    EmailMessage m("Subject ✓", "Body", "Shop <shop@example.com>", {"a@example.com"},
                   {"c@example.com"}, {"b@example.com"});
    m.reply_to = {"reply@example.com"};
    m.extra_headers = {{"X-Tag", "t"}};
    m.attach("bytes.bin", std::string("\x00\xff\x01\x80 binary", 11), "application/octet-stream");
    m.attach_inline("logo", "logo.png", "PNGDATA");
    m.attach_alternative("<p>Body</p>", "text/html");
    m.template_id = "d-123";
    m.dynamic_template_data = nlohmann::json{{"name", "Jane"}, {"items", {1, 2}}};
    m.substitutions = {{"-x-", "y"}};
    sendgrid_backend::Personalization p;
    p.to = {"p@example.com"};
    p.subject = "own";
    p.headers = {{"X-P", "1"}};
    p.custom_args = {{"k", "v"}};
    p.send_at = 1'800'000'000;
    p.dynamic_template_data = nlohmann::json{{"a", 1}};
    m.personalizations = {p};
    m.categories = {"welcome", "onboarding"};
    m.custom_args = {{"order", "42"}};
    m.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{7, {7, 8}};
    m.ip_pool_name = "pool";
    m.send_at = 1'800'000'001;
    m.mail_settings.bypass_list_management = true;
    m.mail_settings.footer = sendgrid_backend::Footer{true, "f", "<p>f</p>"};
    m.tracking_settings.track_clicks_plain = false;
    m.tracking_settings.open_tracking_substitution_tag = "%open%";
    m.tracking_settings.subscription_tracking = sendgrid_backend::SubscriptionTracking{};
    sendgrid_backend::GoogleAnalytics ga;
    ga.utm_source = "src";
    m.tracking_settings.ganalytics = ga;
    return m;
}

/// The field a refusal names; reading refuses with InvalidStoredMessage only.
std::string refused_field(const std::string& text) {
    try {
        deserialize_message(text);
    } catch (const sendgrid_backend::InvalidStoredMessage& e) {
        CHECK(e.id() == "sendgrid_backend.invalid_stored_message");
        return e.field();
    } catch (const InvalidMessage& e) {
        return "<an InvalidMessage, not an InvalidStoredMessage: " + e.field() + ">";
    }
    return "<no error>";
}

}  // namespace

TEST_CASE("every field survives the round trip", "[message_json]") {
    const EmailMessage original = kitchen_sink();
    const std::string text = serialize_message(original);
    const EmailMessage copy = deserialize_message(text);
    CHECK(serialize_message(copy) == text);
    CHECK(copy.attachments.at(0).content == original.attachments.at(0).content);
    CHECK(copy.attachments.at(1).content_id == "logo");
    CHECK(copy.personalizations.at(0).send_at == 1'800'000'000);
    CHECK(copy.unsubscribe_group->groups_to_display == std::vector<std::int64_t>{7, 8});
    CHECK(copy.tracking_settings.ganalytics->utm_source == "src");
    CHECK(sendgrid_backend::build_payload(copy) == sendgrid_backend::build_payload(original));
}

TEST_CASE("a plain message stays small and keeps Django's defaults", "[message_json]") {
    const EmailMessage m("Hi", "Body", "shop@example.com", {"jane@example.com"});
    const std::string text = serialize_message(m);
    CHECK(text.size() < 200);
    const EmailMessage copy = deserialize_message(text);
    CHECK(copy.content_subtype == "plain");
    CHECK_FALSE(copy.make_private);
    CHECK(copy.outcome.status == sendgrid_backend::SendStatus::not_attempted);
}

TEST_CASE("malformed stored messages are refused, naming the field", "[message_json]") {
    CHECK(refused_field("not json") == "message");
    CHECK(refused_field("[]") == "message");
    CHECK(refused_field(R"({"subject":"x"})") == "v");
    CHECK(refused_field(R"({"v":2})") == "v");
    CHECK(refused_field(R"({"v":1,"subject":3})") == "subject");
    CHECK(refused_field(R"({"v":1,"to":"a@b.c"})") == "to");
    CHECK(refused_field(R"({"v":1,"to":["a@b.c",5]})") == "to[1]");
    CHECK(refused_field(R"({"v":1,"extra_headers":{"X":1}})") == "extra_headers[\"X\"]");
    CHECK(refused_field(R"({"v":1,"attachments":[{"content":"@@@"}]})") ==
          "attachments[0].content");
    CHECK(refused_field(R"({"v":1,"attachments":[{"size":1}]})") == "attachments[0].size");
    CHECK(refused_field(R"({"v":1,"send_at":1.5})") == "send_at");
    CHECK(refused_field(R"({"v":1,"send_at":18446744073709551615})") == "send_at");
    CHECK(refused_field(R"({"v":1,"make_private":"yes"})") == "make_private");
    CHECK(refused_field(R"({"v":1,"personalizations":[{"to":["a@b.c"],"cc":[1]}]})") ==
          "personalizations[0].cc[0]");
    CHECK(refused_field(R"({"v":1,"unsubscribe_group":{"groups_to_display":[1,"x"]}})") ==
          "unsubscribe_group.groups_to_display[1]");
    CHECK(refused_field(R"({"v":1,"mail_settings":{"footer":{"enable":1}}})") ==
          "mail_settings.footer.enable");
    CHECK(refused_field(R"({"v":1,"tracking_settings":{"ganalytics":{"utm":"x"}}})") ==
          "tracking_settings.ganalytics.utm");
    CHECK(refused_field(R"({"v":1,"mail_settings":[]})") == "mail_settings");
    CHECK(refused_field(R"({"v":1,"alternatives":[{"content":"x"},2]})") == "alternatives[1]");
    CHECK(refused_field(R"({"v":1,"ip_pool_name":null})") == "ip_pool_name");
    CHECK(refused_field(R"({"v":1,"tracking_settings":{"subscription_tracking":{"on":1}}})") ==
          "tracking_settings.subscription_tracking.on");
    CHECK(refused_field(R"({"v":1,"priority":"high"})") == "priority");
    CHECK(refused_field(R"({"v":1,"":1})") == R"("")");  // found by fuzz_message_json
    CHECK(refused_field(R"({"v":1,"personalizations":[{"to":["a@b.c"],"":1}]})") ==
          R"(personalizations[0]."")");
    // Deeper than 512 levels: nlohmann would overflow the stack copying it out.
    const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    CHECK(refused_field(R"({"v":1,"dynamic_template_data":{"x":)" + deep + "}}") == "message");
    // JSON text then a NUL byte: nlohmann alone would stop reading at the NUL and take it.
    CHECK(refused_field(std::string(R"({"v":1})") + '\0' + "junk") == "message");
}

TEST_CASE("template data nested up to 256 levels is stored and read back; deeper is refused",
          "[message_json]") {
    const auto nested = [](int depth) {  // {"x":[[...]]}, `depth` levels in all
        nlohmann::json data = nlohmann::json::object();
        data["x"] =
            nlohmann::json::parse(std::string(depth - 1, '[') + std::string(depth - 1, ']'));
        return data;
    };
    EmailMessage m("ok", "Body", "shop@example.com", {"jane@example.com"});
    m.dynamic_template_data = nested(256);
    CHECK(deserialize_message(serialize_message(m)).dynamic_template_data ==
          m.dynamic_template_data);
    m.dynamic_template_data = nested(100'000);
    CHECK_THROWS_WITH(serialize_message(m), Catch::Contains("dynamic_template_data: nests arrays "
                                                            "and objects deeper than 256 levels"));
    m.dynamic_template_data.reset();
    sendgrid_backend::Personalization own;
    own.to = {"jane@example.com"};
    own.dynamic_template_data = nested(257);
    m.personalizations.push_back(std::move(own));
    try {
        serialize_message(m);
        FAIL("no error");
    } catch (const InvalidMessage& e) {
        CHECK(e.field() == "personalizations[0].dynamic_template_data");
    }
}

TEST_CASE("text that is not UTF-8 cannot be stored as JSON and is refused by name",
          "[message_json]") {
    EmailMessage m("ok", "Body", "shop@example.com", {"jane@example.com"});
    m.cc = {"x@example.com", "bad\xff@example.com"};
    CHECK_THROWS_WITH(serialize_message(m), Catch::Contains("cc[1]"));
    // Writing refuses the message itself: an InvalidMessage, not a stored text's refusal.
    try {
        serialize_message(m);
        FAIL("no error");
    } catch (const InvalidMessage& e) {
        CHECK(e.id() == "sendgrid_backend.invalid_message");
        CHECK(e.reason() == "is not valid UTF-8");
    }
    m.cc.clear();
    m.dynamic_template_data = nlohmann::json{{"k", "\xc3"}};
    try {
        serialize_message(m);
        FAIL("no error");
    } catch (const InvalidMessage& e) {
        CHECK(e.field() == "dynamic_template_data");
    }
}
