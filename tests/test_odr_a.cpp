// With test_odr_b.cpp: every header in two TUs of one program. A definition in a header that is
// not `inline` makes this program fail to link; process-wide state that is not `inline` shows up
// as two different objects.
#include "all_headers.hpp"
#include "catch.hpp"

const void* email_sent_signal_seen_from_b();

TEST_CASE("all headers in two translation units make one program with one signal", "[odr]") {
    CHECK(email_sent_signal_seen_from_b() == &sendgrid_backend::sendgrid_email_sent);
}
