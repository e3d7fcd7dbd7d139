// 02: see exactly what would be POSTed to SendGrid for a message, without sending anything,
// and what a message SendGrid would refuse looks like.
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <iostream>

int main() {
    using namespace sendgrid_backend;

    EmailMessage message("Your receipt", "Thanks for your order!", "Shop <shop@example.com>",
                         {"Jane Doe <jane@example.com>"});
    message.attach_alternative("<p>Thanks for your <b>order</b>!</p>", "text/html");
    message.attach("receipt.txt", "Order 42: 1 teapot");
    message.categories = {"receipts"};
    message.custom_args = {{"order_id", "42"}};

    PayloadOptions options;  // what SendgridBackend fills in from its Settings
    options.sandbox_mode = true;
    std::cout << build_payload(message, options).dump(2) << '\n';

    message.extra_headers["Bcc"] = "sneaky@example.com";  // reserved: SendGrid would refuse it
    try {
        build_payload(message, options);
        return 1;
    } catch (const InvalidMessage& error) {
        std::cout << "refused before sending: " << error.what() << "\n  field: " << error.field()
                  << '\n';
    }
    return 0;
}
