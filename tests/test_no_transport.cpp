// A program that never includes transport/curl.hpp has no default transport: the backend says so
// instead of failing at the first send.
#include <sendgrid_backend/backend.hpp>

#include "catch.hpp"

TEST_CASE("without transport/curl.hpp and without a transport, construction explains why",
          "[mail]") {
    sendgrid_backend::Settings settings;
    settings.api_key = "SG.x";
    try {
        sendgrid_backend::SendgridBackend backend(settings);
        FAIL("constructed without a transport");
    } catch (const sendgrid_backend::ImproperlyConfigured& e) {
        CHECK(e.setting() == "BackendOptions::transport");
        CHECK(std::string(e.what()).find("transport/curl.hpp") != std::string::npos);
    }
}
