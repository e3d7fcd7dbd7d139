// Parsing Event Webhook events needs nlohmann/json only (no OpenSSL): this test links nothing
// else. Every number read from the network is taken when it fits and refused when it does not,
// never converted with undefined behaviour (1e300 into an int64 was, before 0.2.0).
#include <sendgrid_backend/webhook_events.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "catch.hpp"

using sendgrid_backend::parse_webhook_events;

namespace {

sendgrid_backend::WebhookEvent one_event(const std::string& fields) {
    const auto events =
        parse_webhook_events(R"([{"event":"deferred","email":"a@b.c",)" + fields + "}]");
    REQUIRE(events.size() == 1);
    return events[0];
}

}  // namespace

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
