// libFuzzer harness for the payload: a message made from the input goes through build_payload
// (the tree) and serialize_payload (the wire text). Both must refuse it naming the same field,
// or both accept it with the same JSON, the text parsing back to the tree, and SendGrid's
// structural rules holding. With SENDGRID_BACKEND_PAYLOAD_DIR set (the corpus runner in ctest)
// every accepted payload is written there, and the payload_schema test validates each against
// SendGrid's JSON Schema.
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "fuzz_input.hpp"

namespace {

namespace sg = sendgrid_backend;

const char* const addresses[] = {"jane@example.com",
                                 "Jane Doe <jane@example.com>",
                                 "\"Doe, J\" <j@example.com>",
                                 "bob@example.org",
                                 "",
                                 " ",
                                 "not-an-address",
                                 "a@b",
                                 "x\r\n@evil.com",
                                 "caf\xc3\xa9@example.com"};
const char* const words[] = {"Hello",       "",     " ",        "line\nbreak",
                             "caf\xc3\xa9", "\xff", "<p>x</p>", "quote\"back\\slash"};
const char* const types[] = {"text/plain", "text/html", "text/x-amp-html", "text/calendar", ""};
const char* const headers[] = {"X-Tag", "Reply-To", "Subject", "X Bad", "x-sg-id", "X-\xc3\xa9"};

template <std::size_t N>
std::vector<std::string> list(fuzz::Input& in, const char* const (&choices)[N], std::size_t max) {
    std::vector<std::string> values(in.below(max + 1));
    for (auto& value : values) value = in.pick(choices);
    return values;
}

std::map<std::string, std::string> string_map(fuzz::Input& in) {
    std::map<std::string, std::string> values;
    for (std::size_t i = in.below(3); i > 0; --i) values[in.pick(words)] = in.pick(words);
    return values;
}

sg::EmailMessage message_from(fuzz::Input& in) {
    sg::EmailMessage m(in.pick(words), in.pick(words), in.pick(addresses), list(in, addresses, 4),
                       list(in, addresses, 2), list(in, addresses, 2));
    if (in.flag()) m.reply_to = list(in, addresses, 2);
    for (std::size_t i = in.below(3); i > 0; --i)
        m.extra_headers[in.pick(headers)] = in.pick(words);
    for (std::size_t i = in.below(3); i > 0; --i) {
        if (in.flag()) {
            m.attach(in.pick(words), in.text(40), in.pick(types));
        } else {
            m.attach_inline(in.pick(words), in.pick(words), in.text(40), in.pick(types));
        }
    }
    for (std::size_t i = in.below(3); i > 0; --i)
        m.attach_alternative(in.pick(words), in.pick(types));
    if (in.flag()) m.content_subtype = in.flag() ? "html" : in.pick(words);
    if (in.flag()) m.template_id = in.pick(words);
    if (in.flag()) {
        const std::string text = in.text(80);
        m.dynamic_template_data = nlohmann::json::parse(text, nullptr, false);
        if (m.dynamic_template_data->is_discarded())
            m.dynamic_template_data = nlohmann::json{{"k", text}};
    }
    m.substitutions = string_map(in);
    for (std::size_t i = in.below(3); i > 0; --i) {
        sg::Personalization p;
        p.to = list(in, addresses, 2);
        p.cc = list(in, addresses, 1);
        if (in.flag()) p.subject = in.pick(words);
        p.headers = string_map(in);
        p.custom_args = string_map(in);
        if (in.flag()) p.send_at = in.integer();
        m.personalizations.push_back(p);
    }
    m.make_private = in.flag();
    m.categories = list(in, words, 3);
    m.custom_args = string_map(in);
    if (in.flag()) {
        sg::UnsubscribeGroup group;
        if (in.flag()) group.group_id = in.integer();
        for (std::size_t i = in.below(30); i > 0; --i)
            group.groups_to_display.push_back(in.integer());
        m.unsubscribe_group = group;
    }
    if (in.flag()) m.ip_pool_name = in.pick(words);
    if (in.flag()) m.batch_id = in.pick(words);
    if (in.flag()) m.send_at = in.integer();
    if (in.flag()) m.mail_settings.bypass_list_management = in.flag();
    if (in.flag()) m.mail_settings.footer = sg::Footer{in.flag(), in.pick(words), in.pick(words)};
    if (in.flag()) m.tracking_settings.track_clicks_plain = in.flag();
    if (in.flag()) m.tracking_settings.open_tracking_substitution_tag = in.pick(words);
    return m;
}

template <class Build>
std::string refusal(Build&& build) {
    try {
        build();
    } catch (const sg::InvalidMessage& invalid) {
        return invalid.field();
    }
    return "";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const sg::EmailMessage message = message_from(in);
    sg::PayloadOptions options;
    options.sandbox_mode = in.flag();
    options.deduplicate_recipients = in.flag();
    nlohmann::json tree;
    std::string text;
    const std::string tree_refusal = refusal([&] { tree = sg::build_payload(message, options); });
    const std::string text_refusal =
        refusal([&] { text = sg::serialize_payload(message, options); });
    if (tree_refusal != text_refusal) fuzz::fail("the two forms refuse differently");
    if (!tree_refusal.empty()) return 0;
    const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
    if (parsed.is_discarded()) fuzz::fail("the wire text is not JSON");
    if (parsed != tree) fuzz::fail("the wire text and the tree differ");
    if (!tree.contains("from") || !tree["personalizations"].is_array() ||
        tree["personalizations"].empty()) {
        fuzz::fail("no sender or no personalization");
    }
    std::size_t recipients = 0;
    for (const auto& p : tree["personalizations"]) {
        if (!p.contains("to") || p["to"].empty()) fuzz::fail("a personalization without to");
        for (const char* field : {"to", "cc", "bcc"})
            recipients += p.value(field, nlohmann::json::array()).size();
    }
    if (recipients > 1000) fuzz::fail("more than 1000 recipients");
    if (const char* dir = std::getenv("SENDGRID_BACKEND_PAYLOAD_DIR")) {
        std::ofstream(std::string(dir) + "/fuzz_" + std::to_string(std::hash<std::string>{}(text)) +
                      ".json")
            << text;
    }
    return 0;
}
