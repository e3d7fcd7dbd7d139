// A second translation unit for test_signals.cpp: it must see the very same sendgrid_email_sent.
#include <sendgrid_backend/signals.hpp>

#include <cstddef>

std::size_t connect_email_sent_handler_in_other_tu() {
    using namespace sendgrid_backend;
    sendgrid_email_sent.connect("other-tu",
                                [](const SendgridBackend&, const EmailMessage&, bool) {});
    return sendgrid_email_sent.num_handlers();
}

const void* email_sent_address_in_other_tu() { return &sendgrid_backend::sendgrid_email_sent; }
