// TemplateData: dynamic_template_data held so that the umbrella header needs only
// nlohmann/json_fwd.hpp. It must behave as the std::optional<nlohmann::json> it replaced, and a
// value stored in one file must be copied, compared, checked and written by files that never
// include nlohmann/json.hpp (template_data_umbrella.hpp's functions).
#include <sendgrid_backend/message.hpp>
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

#include "catch.hpp"
#include "template_data_umbrella.hpp"

namespace {

using nlohmann::json;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::TemplateData;

EmailMessage template_message() {
    EmailMessage message("Hi", "", "shop@example.com", {"jane@example.com"});
    message.template_id = "d-123";
    return message;
}

}  // namespace

TEST_CASE("TemplateData is used like std::optional<nlohmann::json>", "[template_data]") {
    TemplateData data;
    CHECK_FALSE(data);
    CHECK_FALSE(data.has_value());
    CHECK_THROWS_AS(data.value(), std::bad_optional_access);

    data = {{"name", "Jane"}};  // braces make a json: this one is an object, not an array
    CHECK(*data == json::object({{"name", "Jane"}}));
    data = {{"name", "Jane"}, {"items", {1, 2}}};
    REQUIRE(data);
    CHECK(*data == json{{"name", "Jane"}, {"items", {1, 2}}});
    CHECK(data->at("name") == "Jane");
    CHECK(data.value()["items"][1] == 2);

    (*data)["coupon"] = "WELCOME10";  // edited in place
    data->erase("items");
    CHECK(*data == json{{"name", "Jane"}, {"coupon", "WELCOME10"}});

    data = json::array({1, 2});  // any JSON is held; the payload insists on an object
    CHECK(data->is_array());
    data = std::string("text");
    CHECK(*data == "text");

    data = std::nullopt;
    CHECK_FALSE(data);
    data.emplace(json::object());
    CHECK(data->empty());
    data.reset();
    CHECK_FALSE(data);
    data.reset();  // resetting an empty one is fine
    CHECK_FALSE(data);
}

TEST_CASE("TemplateData copies its value; moves leave the source empty", "[template_data]") {
    TemplateData original = json{{"a", 1}};
    TemplateData copy = original;
    (*copy)["a"] = 2;
    CHECK((*original)["a"] == 1);  // not shared
    CHECK((*copy)["a"] == 2);
    CHECK(original != copy);

    copy = original;
    CHECK(original == copy);
    const TemplateData& itself = copy;
    copy = itself;  // self-assignment keeps the value
    CHECK(copy == original);

    TemplateData moved = std::move(copy);
    CHECK(moved == original);
    CHECK_FALSE(copy);  // NOLINT(bugprone-use-after-move): moved-from is empty, as documented

    TemplateData empty;
    CHECK(empty == TemplateData());
    CHECK(empty != original);
    CHECK(original != empty);
    empty = original;
    CHECK(empty == original);
    original = TemplateData();
    CHECK_FALSE(original);
    CHECK(empty);
}

TEST_CASE("A message's template data stored here is written by a file without json.hpp",
          "[template_data]") {
    EmailMessage message = template_message();
    message.dynamic_template_data = {{"name", "Jane"}};
    message.personalizations.push_back({});
    message.personalizations[0].to = {"john@example.com"};
    message.personalizations[0].dynamic_template_data = {{"name", "John"}};

    const json payload = json::parse(umbrella_only::payload_text(message));
    CHECK(payload == sendgrid_backend::build_payload(message));
    CHECK(payload["personalizations"][0]["dynamic_template_data"] == json{{"name", "John"}});

    // Copied over there, the copy is independent and compares equal over there and here.
    EmailMessage copy = umbrella_only::copy_of(message);
    CHECK(umbrella_only::same_template_data(copy, message));
    (*copy.dynamic_template_data)["name"] = "Janet";
    CHECK_FALSE(umbrella_only::same_template_data(copy, message));
    CHECK((*message.dynamic_template_data)["name"] == "Jane");

    umbrella_only::clear_template_data(copy);
    CHECK_FALSE(copy.dynamic_template_data);
    CHECK(json::parse(umbrella_only::payload_text(copy))["personalizations"][0] ==
          payload["personalizations"][0]);  // the personalization's own data is still sent
}

TEST_CASE("Template data that is not sendable is refused over there, naming the field",
          "[template_data]") {
    EmailMessage message = template_message();
    auto refused_field = [&message]() -> std::string {
        try {
            umbrella_only::payload_text(message);
        } catch (const sendgrid_backend::InvalidMessage& e) {
            return e.field() + ": " + e.reason();
        }
        return "<no error>";
    };
    message.dynamic_template_data = json::array({1});
    CHECK(refused_field() == "dynamic_template_data: must be a JSON object");
    message.dynamic_template_data = {{"name", "\xc3"}};
    CHECK(refused_field() ==
          R"(dynamic_template_data["name"]: is not valid UTF-8 (SendGrid answers 415 to it))");
    json deep = json::object();
    for (int i = 0; i < 300; ++i) deep = json{{"x", std::move(deep)}};
    message.dynamic_template_data = std::move(deep);
    CHECK(refused_field().find("nests arrays and objects deeper than 256 levels") !=
          std::string::npos);
    message.dynamic_template_data = {{"name", "Jane"}};
    CHECK(refused_field() == "<no error>");
}
