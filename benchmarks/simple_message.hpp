#pragma once

// The message the HTTP and queue benchmarks send: the "simple" one (2 to, cc, bcc,
// reply_to, plain text), numbered so that subjects differ.

#include <sendgrid_backend/message.hpp>

#include <string>

namespace sendgrid_backend_bench {

inline sendgrid_backend::EmailMessage simple_message(int i) {
    sendgrid_backend::EmailMessage message(
        "Order " + std::to_string(i) + " shipped",
        "Your order is on its way. It should arrive within three days.", "Shop <shop@example.com>",
        {"Jane Doe <jane@example.com>", "john@example.com"}, {"orders@example.com"},
        {"audit@example.com"});
    message.reply_to = {"support@example.com"};
    return message;
}

}  // namespace sendgrid_backend_bench
