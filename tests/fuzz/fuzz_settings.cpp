// libFuzzer harness for Settings: fuzzed values for every SENDGRID_* variable go through
// from_env() and validate(); the only way out is ImproperlyConfigured naming a setting, and no
// error text ever holds the API key.
#include <sendgrid_backend/settings.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../support/setting_variables.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const char* const urls[] = {"https://api.sendgrid.com", "http://[::1]:8080/base",
                                       "http://127.0.0.1:1"};
    static const char* const numbers[] = {"30", "0.0001", "1e308", "-1", "nan", "86400"};
    fuzz::Input input(data, size);
    // The key carries a marker no other value holds, so a leak is told from a quoted value.
    const std::string marker = "SG.k3y-9f2c7e-";
    bool marker_elsewhere = false;
    for (const char* name : sendgrid_backend_test::setting_variables) {
        if (input.flag()) {
            unsetenv(name);
            continue;
        }
        std::string value = std::string(name) == "SENDGRID_HOST_URL"  ? input.pick(urls)
                            : std::string(name) == "SENDGRID_TIMEOUT" ? input.pick(numbers)
                                                                      : input.text();
        value = value.substr(0, value.find('\0'));  // the environment cannot hold a NUL
        if (std::string(name) == "SENDGRID_API_KEY") {
            value = marker + value;
        } else if (value.find(marker) != std::string::npos) {
            marker_elsewhere = true;
        }
        setenv(name, value.c_str(), 1);
    }
    namespace sg = sendgrid_backend;
    try {
        const sg::Settings settings = sg::Settings::from_env();
        settings.validate();
        if (settings.timeout.count() <= 0) fuzz::fail("a timeout of 0 or less got through");
    } catch (const sg::ImproperlyConfigured& error) {
        if (error.setting().empty()) fuzz::fail("an error names no setting");
        if (!marker_elsewhere && std::string(error.what()).find(marker) != std::string::npos) {
            fuzz::fail("the API key is in an error text");
        }
    }
    return 0;
}
