// libFuzzer harness for stored messages (message_json.hpp), what the Redis queue reads back:
// any text is either refused with an InvalidMessage that names a field, or read into a message
// that stores again, and reading that back and storing it once more gives the same text.
#include <sendgrid_backend/message_json.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace sg = sendgrid_backend;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    sg::EmailMessage message;
    try {
        message = sg::deserialize_message(text);
    } catch (const sg::InvalidMessage& e) {
        if (e.field().empty()) fuzz::fail("refused without naming a field");
        return 0;
    }
    std::string stored;
    try {
        stored = sg::serialize_message(message);
    } catch (const sg::InvalidMessage&) {
        // Read but not storable: only template data deeper than a message may hold.
        const bool has_template_data =
            message.dynamic_template_data ||
            std::any_of(message.personalizations.begin(), message.personalizations.end(),
                        [](const sg::Personalization& p) { return p.dynamic_template_data; });
        if (!has_template_data) {
            fuzz::fail("read a message it cannot store");
        }
        return 0;
    }
    if (sg::serialize_message(sg::deserialize_message(stored)) != stored) {
        fuzz::fail("a stored message reads back different");
    }
    return 0;
}
