// The half of test_template_data that sees only the umbrella header: nlohmann/json.hpp must
// stay out of it (it costs every including file about a second of compile time), and messages
// whose template data another file stored are still copied, compared and written here.
#include <sendgrid_backend/sendgrid_backend.hpp>

#ifdef INCLUDE_NLOHMANN_JSON_HPP_
#error "sendgrid_backend.hpp included nlohmann/json.hpp"
#endif

#include "template_data_umbrella.hpp"

namespace umbrella_only {

std::string payload_text(const sendgrid_backend::EmailMessage& message) {
    return sendgrid_backend::serialize_payload(message);
}

sendgrid_backend::EmailMessage copy_of(const sendgrid_backend::EmailMessage& message) {
    sendgrid_backend::EmailMessage copy = message;
    return copy;
}

bool same_template_data(const sendgrid_backend::EmailMessage& a,
                        const sendgrid_backend::EmailMessage& b) {
    return a.dynamic_template_data == b.dynamic_template_data;
}

void clear_template_data(sendgrid_backend::EmailMessage& message) {
    message.dynamic_template_data.reset();
}

}  // namespace umbrella_only
