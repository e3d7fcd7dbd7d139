#pragma once

// Functions compiled in a file that includes only the umbrella header (see
// test_template_data_umbrella.cpp), called from one that includes nlohmann/json.hpp.

#include <sendgrid_backend/message.hpp>

#include <string>

namespace umbrella_only {

std::string payload_text(const sendgrid_backend::EmailMessage& message);
sendgrid_backend::EmailMessage copy_of(const sendgrid_backend::EmailMessage& message);
bool same_template_data(const sendgrid_backend::EmailMessage& a,
                        const sendgrid_backend::EmailMessage& b);
void clear_template_data(sendgrid_backend::EmailMessage& message);

}  // namespace umbrella_only
