#include <sendgrid_backend/settings.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "catch.hpp"

using sendgrid_backend::ImproperlyConfigured;
using sendgrid_backend::Settings;

namespace {

const char* const kVariables[] = {"SENDGRID_API_KEY",
                                  "SENDGRID_HOST_URL",
                                  "SENDGRID_DEBUG",
                                  "SENDGRID_SANDBOX_MODE",
                                  "SENDGRID_SANDBOX_MODE_IN_DEBUG",
                                  "SENDGRID_TRACK_EMAIL_OPENS",
                                  "SENDGRID_TRACK_CLICKS_HTML",
                                  "SENDGRID_TRACK_CLICKS_PLAIN",
                                  "SENDGRID_ECHO_TO_STDOUT",
                                  "SENDGRID_TIMEOUT"};

/// Clears the SENDGRID_* variables for one test and restores nothing: tests own them.
struct CleanEnvironment {
    CleanEnvironment() {
        for (const char* name : kVariables) unsetenv(name);
    }
    ~CleanEnvironment() {
        for (const char* name : kVariables) unsetenv(name);
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
    const Settings settings = Settings::from_env();
    CHECK(settings.api_key == "SG.env");
    CHECK(settings.host_url == "https://api.eu.sendgrid.com");
    CHECK_FALSE(settings.track_email_opens);
    CHECK_FALSE(settings.track_clicks_html);
    CHECK_FALSE(settings.track_clicks_plain);
    CHECK(settings.echo_to_stdout);
    CHECK(settings.timeout == std::chrono::milliseconds(2500));
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
    CHECK(setting_named_by("SENDGRID_DEBUG", " True ") == "<no error>");
}
