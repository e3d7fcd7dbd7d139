// 01: hang handlers on a signal, send it, and see each handler fire in order.
//
// sendgrid_email_sent is a Signal<SendgridBackend, EmailMessage>; this example uses the same
// template with its own small types so that it needs nothing but the core headers.
#include <sendgrid_backend/signals.hpp>

#include <iostream>
#include <stdexcept>
#include <string>

struct Mailer {
    std::string name;
};
struct Mail {
    std::string subject;
};

int main() {
    sendgrid_backend::Signal<Mailer, Mail> email_sent;

    // A logging handler, connected once however often this code runs (dispatch_uid).
    email_sent.connect("log", [](const Mailer& sender, const Mail& mail, bool fail_flag) {
        std::cout << "[log] " << sender.name << ": '" << mail.subject << "' "
                  << (fail_flag ? "FAILED" : "sent") << '\n';
    });
    // A metrics handler that lives only as long as this scope.
    int failures = 0;
    {
        sendgrid_backend::ScopedConnection metrics = email_sent.connect(
            [&](const Mailer&, const Mail&, bool fail_flag) { failures += fail_flag ? 1 : 0; });
        // A handler that throws does not stop the others when the robust form is used.
        email_sent.connect(
            [](const Mailer&, const Mail&, bool) { throw std::runtime_error("alerting is down"); });

        const Mailer mailer{"backend"};
        email_sent.send_robust(mailer, Mail{"Welcome"}, false);
        for (const auto& error : email_sent.send_robust(mailer, Mail{"Invoice"}, true)) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                std::cout << "[handler error] " << e.what() << '\n';
            }
        }
    }
    std::cout << "failures counted: " << failures
              << ", handlers left: " << email_sent.num_handlers() << '\n';
    return failures == 1 && email_sent.num_handlers() == 2 ? 0 : 1;
}
