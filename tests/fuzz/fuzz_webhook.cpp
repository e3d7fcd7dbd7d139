// libFuzzer harness for the Event Webhook: signature checking, key loading, parsing and the
// whole handle() path must refuse anything malformed cleanly, never crash.
// Input: "<signature>\n<timestamp>\n<body>"; the whole input is also tried as a public key.
#include <sendgrid_backend/webhook.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <sendgrid_backend/testing/webhook_signer.hpp>

namespace {

struct Fixture {
    sendgrid_backend::testing::WebhookSigner signer;
    sendgrid_backend::EventWebhookVerifier verifier{signer.public_key_base64()};
    sendgrid_backend::EventWebhook checked{options(true)};
    sendgrid_backend::EventWebhook unsigned_{options(false)};

    sendgrid_backend::WebhookOptions options(bool with_key) const {
        sendgrid_backend::WebhookOptions result;
        if (with_key) {
            result.public_key = signer.public_key_base64();
        } else {
            result.allow_unsigned = true;
        }
        result.tolerance.reset();
        result.seen.reset();  // every input on its own
        return result;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Fixture fixture;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto first = input.find('\n');
    const auto second = first == std::string_view::npos ? first : input.find('\n', first + 1);
    const std::string_view signature = input.substr(0, first);
    const std::string_view timestamp = first == std::string_view::npos
                                           ? std::string_view()
                                           : input.substr(first + 1, second - first - 1);
    const std::string_view body =
        second == std::string_view::npos ? input : input.substr(second + 1);

    (void)fixture.verifier.check(body, signature, timestamp);
    try {
        sendgrid_backend::EventWebhookVerifier key(input);
        (void)key.verify(body, signature, timestamp);
    } catch (const sendgrid_backend::ImproperlyConfigured&) {
    }
    const sendgrid_backend::HttpHeaders headers = {
        {std::string(sendgrid_backend::webhook_signature_header), std::string(signature)},
        {std::string(sendgrid_backend::webhook_timestamp_header), std::string(timestamp)}};
    (void)fixture.checked.handle(headers, body);
    (void)fixture.unsigned_.handle({}, body);  // reaches the parser with any body
    return 0;
}
