// 04: test your own code's email without a network, as Django's mail.outbox allows.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <iostream>
#include <memory>

// The code under test: sends a welcome mail.
bool send_welcome(const sendgrid_backend::SendgridBackend& backend, const std::string& user) {
    sendgrid_backend::EmailMessage message("Welcome", "Hi " + user, "shop@example.com", {user});
    return backend.send_message(message);
}

int main() {
    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    sendgrid_backend::Settings settings;
    settings.api_key = "SG.test";
    sendgrid_backend::BackendOptions options;
    options.transport = outbox;
    const sendgrid_backend::SendgridBackend backend(settings, options);

    const bool ok = send_welcome(backend, "jane@example.com");

    const auto sent = outbox->outbox();
    const bool as_expected = ok && sent.size() == 1 && sent[0]["subject"] == "Welcome" &&
                             sent[0]["personalizations"][0]["to"][0]["email"] == "jane@example.com";
    std::cout << (as_expected ? "outbox holds the welcome mail\n" : "unexpected outbox\n");
    return as_expected ? 0 : 1;
}
