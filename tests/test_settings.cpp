#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/settings.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support/setting_variables.hpp"

using sendgrid_backend::ImproperlyConfigured;
using sendgrid_backend::Settings;

namespace {

/// Clears the SENDGRID_* variables for one test and restores nothing: tests own them.
struct CleanEnvironment {
    CleanEnvironment() {
        for (const char* name : sendgrid_backend_test::setting_variables) unsetenv(name);
    }
    ~CleanEnvironment() {
        for (const char* name : sendgrid_backend_test::setting_variables) unsetenv(name);
    }
};

std::string setting_named_by(const char* variable, const char* value) {
    setenv(variable, value, 1);
    try {
        Settings::from_env();
    } catch (const ImproperlyConfigured& e) {
        unsetenv(variable);
        return e.setting();
    }
    unsetenv(variable);
    return "<no error>";
}

}  // namespace

TEST_CASE("from_env with nothing set keeps the defaults", "[settings]") {
    CleanEnvironment clean;
    const Settings settings = Settings::from_env();
    CHECK(settings.api_key.empty());
    CHECK(settings.host_url == "https://api.sendgrid.com");
    CHECK_FALSE(settings.effective_sandbox_mode());
    CHECK(settings.track_email_opens);
    CHECK(settings.track_clicks_html);
    CHECK(settings.track_clicks_plain);
    CHECK_FALSE(settings.echo_to_stdout);
    CHECK(settings.timeout == std::chrono::milliseconds(30'000));
    CHECK(settings.max_in_flight == 8);
}

TEST_CASE("from_env reads every documented variable", "[settings]") {
    CleanEnvironment clean;
    setenv("SENDGRID_API_KEY", "SG.env", 1);
    setenv("SENDGRID_HOST_URL", "https://api.eu.sendgrid.com", 1);
    setenv("SENDGRID_TRACK_EMAIL_OPENS", "false", 1);
    setenv("SENDGRID_TRACK_CLICKS_HTML", "No", 1);
    setenv("SENDGRID_TRACK_CLICKS_PLAIN", "0", 1);
    setenv("SENDGRID_ECHO_TO_STDOUT", "ON", 1);
    setenv("SENDGRID_TIMEOUT", "2.5", 1);
    setenv("SENDGRID_MAX_IN_FLIGHT", "256", 1);
    const Settings settings = Settings::from_env();
    CHECK(settings.api_key == "SG.env");
    CHECK(settings.host_url == "https://api.eu.sendgrid.com");
    CHECK_FALSE(settings.track_email_opens);
    CHECK_FALSE(settings.track_clicks_html);
    CHECK_FALSE(settings.track_clicks_plain);
    CHECK(settings.echo_to_stdout);
    CHECK(settings.timeout == std::chrono::milliseconds(2500));
    CHECK(settings.max_in_flight == 256);
}

TEST_CASE("sandbox mode: debug and sandbox_mode_in_debug, or forced", "[settings]") {
    CleanEnvironment clean;
    setenv("SENDGRID_DEBUG", "true", 1);
    CHECK(Settings::from_env().effective_sandbox_mode());  // in debug by default
    setenv("SENDGRID_SANDBOX_MODE_IN_DEBUG", "false", 1);
    CHECK_FALSE(Settings::from_env().effective_sandbox_mode());
    setenv("SENDGRID_SANDBOX_MODE", "yes", 1);
    CHECK(Settings::from_env().effective_sandbox_mode());  // forced on
    unsetenv("SENDGRID_DEBUG");
    unsetenv("SENDGRID_SANDBOX_MODE_IN_DEBUG");
    setenv("SENDGRID_SANDBOX_MODE", "off", 1);
    CHECK_FALSE(Settings::from_env().effective_sandbox_mode());
}

TEST_CASE("a typo in a boolean or a bad timeout is an error naming the variable", "[settings]") {
    CleanEnvironment clean;
    CHECK(setting_named_by("SENDGRID_DEBUG", "ture") == "SENDGRID_DEBUG");
    CHECK(setting_named_by("SENDGRID_SANDBOX_MODE", "") == "SENDGRID_SANDBOX_MODE");
    CHECK(setting_named_by("SENDGRID_TRACK_EMAIL_OPENS", "2") == "SENDGRID_TRACK_EMAIL_OPENS");
    CHECK(setting_named_by("SENDGRID_ECHO_TO_STDOUT", "yess") == "SENDGRID_ECHO_TO_STDOUT");
    CHECK(setting_named_by("SENDGRID_TIMEOUT", "abc") == "SENDGRID_TIMEOUT");
    CHECK(setting_named_by("SENDGRID_TIMEOUT", "0") == "SENDGRID_TIMEOUT");
    CHECK(setting_named_by("SENDGRID_TIMEOUT", "-1") == "SENDGRID_TIMEOUT");
    CHECK(setting_named_by("SENDGRID_TIMEOUT", "5s") == "SENDGRID_TIMEOUT");
    CHECK(setting_named_by("SENDGRID_TIMEOUT", "10") == "<no error>");
    for (const char* bad : {"0", "1001", "-1", "16x", "1e2", "", "4294967297", "abc"}) {
        INFO("SENDGRID_MAX_IN_FLIGHT=" << bad);
        CHECK(setting_named_by("SENDGRID_MAX_IN_FLIGHT", bad) == "SENDGRID_MAX_IN_FLIGHT");
    }
    CHECK(setting_named_by("SENDGRID_MAX_IN_FLIGHT", "1") == "<no error>");
    CHECK(setting_named_by("SENDGRID_MAX_IN_FLIGHT", " 1000 ") == "<no error>");
    CHECK(setting_named_by("SENDGRID_DEBUG", " True ") == "<no error>");
}

TEST_CASE("each variable the tests clear is one Settings reads: a bad value is refused by name",
          "[settings]") {
    CleanEnvironment clean;
    for (const char* name : sendgrid_backend_test::setting_variables) {
        const std::string variable = name;
        setenv("SENDGRID_API_KEY", "SG.valid", 1);
        const char* bad = variable == "SENDGRID_API_KEY"    ? "SG.a b"
                          : variable == "SENDGRID_HOST_URL" ? "ftp://example.com"
                          : variable == "SENDGRID_TIMEOUT"  ? "soon"
                                                            : "maybe";
        setenv(name, bad, 1);
        std::string named = "<no error>";
        try {
            Settings::from_env().validate();
        } catch (const ImproperlyConfigured& e) {
            named = e.setting();
        }
        unsetenv(name);
        INFO(variable << " = " << bad);
        CHECK(named == variable);
    }
}

TEST_CASE("a tiny timeout rounds up to 1 ms, never to 0 (libcurl's 'no limit')", "[settings]") {
    CleanEnvironment clean;
    setenv("SENDGRID_TIMEOUT", "0.0001", 1);
    CHECK(Settings::from_env().timeout == std::chrono::milliseconds(1));
    setenv("SENDGRID_TIMEOUT", "2.0001", 1);
    CHECK(Settings::from_env().timeout == std::chrono::milliseconds(2001));
}

namespace {

Settings valid_settings() {
    Settings settings;
    settings.api_key = "SG.abc.def";
    return settings;
}

/// The setting validate() names for `settings`, or "<no error>".
std::string refused_setting(const Settings& settings, std::string* what = nullptr) {
    try {
        settings.validate();
    } catch (const ImproperlyConfigured& e) {
        if (what != nullptr) *what = e.what();
        return e.setting();
    }
    return "<no error>";
}

std::string refused_url(const std::string& url) {
    Settings settings = valid_settings();
    settings.host_url = url;
    return refused_setting(settings);
}

}  // namespace

TEST_CASE("validate accepts the defaults with a key", "[settings][validate]") {
    CHECK(refused_setting(valid_settings()) == "<no error>");
}

TEST_CASE("the API key must be set and printable ASCII; the key is never printed",
          "[settings][validate]") {
    const std::string secret = "SG.secret-part";
    for (const std::string& key :
         {std::string(), std::string("   "), secret + std::string(1, '\0') + "tail", secret + "\n",
          secret + "\r\n", " " + secret, secret + " x", secret + "\t", secret + "\x7f",
          secret + "\xc3\xa9", std::string("\x01") + secret}) {
        INFO("key of " << key.size() << " bytes");
        Settings settings = valid_settings();
        settings.api_key = key;
        std::string what;
        CHECK(refused_setting(settings, &what) == "Settings::api_key");
        CHECK(what.find("secret-part") == std::string::npos);
        CHECK(what.find("tail") == std::string::npos);
    }
    Settings settings = valid_settings();
    settings.api_key = secret + std::string(1, '\0') + "tail";
    std::string what;
    refused_setting(settings, &what);
    CHECK(what.find("not printable ASCII (0x00) at position 14") != std::string::npos);
    settings.api_key = secret + "\n";
    refused_setting(settings, &what);
    CHECK(what.find("line break at position 14") != std::string::npos);
}

TEST_CASE("host_url must be a base http(s) URL", "[settings][validate]") {
    for (const char* good :
         {"https://api.sendgrid.com", "https://api.eu.sendgrid.com/", "http://127.0.0.1:8080",
          "http://[::1]:8080", "http://[::1]", "https://proxy.example.com/sendgrid",
          "https://proxy.example.com/send%20grid/", "HTTPS://API.SENDGRID.COM", "http://localhost",
          "http://host.example.com.:443/base"}) {
        INFO(good);
        CHECK(refused_url(good) == "<no error>");
    }
    for (const char* bad : {"",
                            "api.sendgrid.com",
                            "ftp://api.sendgrid.com",
                            "https://",
                            "https:///v3",
                            "http://[::1",
                            "http://[::1:8080",
                            "http://[zz::1]",
                            "http://exa mple.com",
                            "http://example.com /x",
                            "https://api.sendgrid.com/?x=1",
                            "https://api.sendgrid.com?x",
                            "https://api.sendgrid.com/#frag",
                            "https://api.sendgrid.com/v3/mail/send",
                            "https://api.sendgrid.com/v3",
                            "https://api.sendgrid.com/V3/",
                            "http://host:0",
                            "http://host:65536",
                            "http://host:",
                            "http://host:8o",
                            "http://user:pw@host",
                            "http://ex..ample.com",
                            "http://.example.com",
                            "http://exa%mple.com",
                            "http://example.com/a%zz",
                            "http://example.com/a\"b",
                            "http://h\xc3\xa9.com",
                            "http://example.com\r\n/x"}) {
        INFO(bad);
        CHECK(refused_url(bad) == "Settings::host_url");
    }
    std::string what;
    Settings settings = valid_settings();
    settings.host_url = "https://api.sendgrid.com/v3/mail/send";
    refused_setting(settings, &what);
    CHECK(what.find("/v3/mail/send is added to it") != std::string::npos);
}

TEST_CASE("timeouts, retry values and limits that cannot work are refused by name",
          "[settings][validate]") {
    using std::chrono::milliseconds;
    auto named = [](auto change) {
        Settings settings = valid_settings();
        change(settings);
        return refused_setting(settings);
    };
    CHECK(named([](Settings& s) { s.timeout = milliseconds(0); }) == "Settings::timeout");
    CHECK(named([](Settings& s) { s.timeout = milliseconds(-5); }) == "Settings::timeout");
    CHECK(named([](Settings& s) { s.connect_timeout = milliseconds(0); }) ==
          "Settings::connect_timeout");
    CHECK(named([](Settings& s) { s.max_idle_connection_age = milliseconds(-1); }) ==
          "Settings::max_idle_connection_age");
    CHECK(named([](Settings& s) { s.max_in_flight = 0; }) == "Settings::max_in_flight");
    CHECK(named([](Settings& s) { s.max_in_flight = 1001; }) == "Settings::max_in_flight");
    CHECK(named([](Settings& s) { s.retry.max_tries = 0; }) == "Settings::retry.max_tries");
    CHECK(named([](Settings& s) { s.retry.max_tries = 101; }) == "Settings::retry.max_tries");
    CHECK(named([](Settings& s) { s.retry.initial_backoff = milliseconds(-1); }) ==
          "Settings::retry.initial_backoff");
    CHECK(named([](Settings& s) { s.retry.max_retry_after = milliseconds(-1); }) ==
          "Settings::retry.max_retry_after");
    CHECK(named([](Settings& s) { s.retry.max_backoff = std::chrono::hours(25); }) ==
          "Settings::retry.max_backoff");
    CHECK(named([](Settings& s) { s.retry.multiplier = 0.5; }) == "Settings::retry.multiplier");
    CHECK(named([](Settings& s) { s.retry.multiplier = std::nan(""); }) ==
          "Settings::retry.multiplier");
    CHECK(named([](Settings& s) { s.retry.jitter = -0.1; }) == "Settings::retry.jitter");
    CHECK(named([](Settings& s) { s.retry.jitter = 1.5; }) == "Settings::retry.jitter");
    CHECK(named([](Settings& s) { s.ca_bundle = "/nonexistent/ca.pem"; }) == "Settings::ca_bundle");
    CHECK(named([](Settings& s) { s.ca_bundle = "/etc/hostname"; }) == "<no error>");
    CHECK(named([](Settings& s) { s.max_in_flight = 1; }) == "<no error>");
    CHECK(named([](Settings& s) { s.retry.max_tries = 1; }) == "<no error>");
}

namespace {

/// Every bounded field at the largest value validate() accepts.
void at_every_bound(Settings& s) {
    s.timeout = Settings::max_wait;
    s.connect_timeout = Settings::max_wait;
    s.max_idle_connection_age = Settings::max_wait;
    s.retry.initial_backoff = Settings::max_wait;
    s.retry.max_backoff = Settings::max_wait;
    s.retry.max_retry_after = Settings::max_wait;
    s.retry.max_tries = 100;
    s.retry.multiplier = 1000;
    s.gzip_min_bytes = std::numeric_limits<std::size_t>::max();
}

}  // namespace

TEST_CASE("every duration and count has an upper bound, checked before any arithmetic",
          "[settings][validate]") {
    using std::chrono::milliseconds;
    constexpr milliseconds huge = milliseconds::max();
    auto named = [](auto change) {
        Settings settings = valid_settings();
        change(settings);
        return refused_setting(settings);
    };
    // The largest value of each type: before the bounds, timeout = max passed validate() and
    // overflowed in the backend's constructor (timeout + 10 s; UBSan: signed integer overflow).
    CHECK(named([&](Settings& s) { s.timeout = huge; }) == "Settings::timeout");
    CHECK(named([&](Settings& s) { s.connect_timeout = huge; }) == "Settings::connect_timeout");
    CHECK(named([&](Settings& s) { s.max_idle_connection_age = huge; }) ==
          "Settings::max_idle_connection_age");
    CHECK(named([&](Settings& s) { s.retry.initial_backoff = huge; }) ==
          "Settings::retry.initial_backoff");
    CHECK(named([&](Settings& s) { s.retry.max_backoff = huge; }) == "Settings::retry.max_backoff");
    CHECK(named([&](Settings& s) { s.retry.max_retry_after = huge; }) ==
          "Settings::retry.max_retry_after");
    CHECK(named([](Settings& s) { s.retry.max_tries = std::numeric_limits<int>::max(); }) ==
          "Settings::retry.max_tries");
    CHECK(named([](Settings& s) {
              s.retry.multiplier = std::numeric_limits<double>::infinity();
          }) == "Settings::retry.multiplier");
    CHECK(named([](Settings& s) { s.max_in_flight = std::numeric_limits<std::size_t>::max(); }) ==
          "Settings::max_in_flight");
    // One past the bound is refused, with the bound in the message; the bound itself passes.
    std::string what;
    Settings past = valid_settings();
    past.timeout = Settings::max_wait + milliseconds(1);
    CHECK(refused_setting(past, &what) == "Settings::timeout");
    CHECK_THAT(what, Catch::Matchers::Contains("at most 24 hours"));
    CHECK(named(at_every_bound) == "<no error>");
}

TEST_CASE("a backend at every bound sends without overflow", "[settings][validate]") {
    // Run under UBSan (the test command's build): the arithmetic on the largest accepted values
    // (timeout plus margin, backoff growth, the queue's longest send) stays in range.
    Settings settings = valid_settings();
    at_every_bound(settings);
    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    sendgrid_backend::BackendOptions options;
    options.transport = outbox;
    const sendgrid_backend::SendgridBackend backend(settings, options);
    sendgrid_backend::EmailMessage message("Hi", "Body", "shop@example.com", {"jane@example.com"});
    CHECK(backend.send_message(message));
    CHECK(outbox->size() == 1);
}

TEST_CASE("a refused host_url is shown without its credentials, query or fragment",
          "[settings][secrets]") {
    for (const char* url :
         {"https://user:HOSTSECRET@api.sendgrid.com", "https://:HOSTSECRET@api.sendgrid.com/v3",
          "https://api.sendgrid.com/?api_key=HOSTSECRET", "http://u:HOSTSECRET@127.0.0.1:1/x?y",
          "https://api.sendgrid.com/#HOSTSECRET"}) {
        Settings settings;
        settings.api_key = "SG.test";
        settings.host_url = url;
        INFO(url);
        try {
            settings.validate();
            FAIL("accepted");
        } catch (const ImproperlyConfigured& error) {
            const std::string what = error.what();
            INFO(what);
            CHECK(what.find("HOSTSECRET") == std::string::npos);
            CHECK(what.find("[hidden]") != std::string::npos);
            const bool host_shown = what.find("sendgrid.com") != std::string::npos ||
                                    what.find("127.0.0.1") != std::string::npos;
            CHECK(host_shown);  // what is wrong stays readable
        }
    }
}
