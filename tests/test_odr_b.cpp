#include "all_headers.hpp"

const void* email_sent_signal_seen_from_b() { return &sendgrid_backend::sendgrid_email_sent; }
