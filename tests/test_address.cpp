#include <sendgrid_backend/address.hpp>

#include <string>

#include "catch.hpp"

using sendgrid_backend::Address;
using sendgrid_backend::InvalidMessage;
using sendgrid_backend::parse_address;

TEST_CASE("addresses in the forms Django uses", "[address]") {
    struct Case {
        const char* text;
        Address expected;
    };
    const Case cases[] = {
        {"user@example.com", {"user@example.com", ""}},
        {"  user@example.com  ", {"user@example.com", ""}},
        {"<user@example.com>", {"user@example.com", ""}},
        {"Jane Doe <jane@example.com>", {"jane@example.com", "Jane Doe"}},
        {"\"Doe, Jane\" <jane@example.com>", {"jane@example.com", "Doe, Jane"}},
        {"\"Say \\\"hi\\\"\" <hi@example.com>", {"hi@example.com", "Say \"hi\""}},
        {"\"<weird>\" <w@example.com>", {"w@example.com", "<weird>"}},
        {"first.last+tag@sub.example.co.uk", {"first.last+tag@sub.example.co.uk", ""}},
        {"Zoë <zoe@bücher.example>", {"zoe@bücher.example", "Zoë"}},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        CHECK(parse_address(c.text, "to[0]") == c.expected);
    }
}

TEST_CASE("malformed addresses are refused with the field and the value", "[address]") {
    const char* bad[] = {
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "user@",
        "user@localhost",
        "user@@example.com",
        "a@b@example.com",
        "user name@example.com",
        "Jane <jane@example.com",
        "\"Unclosed <u@example.com>",
        "user@exa mple.com",
        "user@-example.com",
        "user@example..com",
        ".user@example.com",
        "us..er@example.com",
        "Jane <jane@example.com> trailing",
        "user@example.com\r\nBcc: x@example.com",
    };
    for (const char* text : bad) {
        INFO(text);
        try {
            parse_address(text, "cc[3]");
            FAIL("accepted");
        } catch (const InvalidMessage& e) {
            CHECK(e.field() == "cc[3]");
            CHECK(std::string(e.what()).find("cc[3]: ") != std::string::npos);
        }
    }
}

TEST_CASE("the error quotes the value and names the problem", "[address]") {
    try {
        parse_address("jane.example.com", "from_email");
        FAIL("accepted");
    } catch (const InvalidMessage& e) {
        CHECK(std::string(e.what()) ==
              "[sendgrid_backend.invalid_message] from_email: 'jane.example.com' is not a valid "
              "email address (has no '@')");
        CHECK(e.id() == "sendgrid_backend.invalid_message");
    }
}

TEST_CASE("the one-pass mailbox check agrees with the rule-by-rule one", "[address]") {
    namespace detail = sendgrid_backend::detail;
    const std::string long_local = std::string(64, 'a') + "@example.com";
    const std::string too_long_local = std::string(65, 'a') + "@example.com";
    const std::string long_domain = "a@" + std::string(251, 'b') + ".com";
    const std::string too_long_domain = "a@" + std::string(252, 'b') + ".com";
    const std::string mailboxes[] = {"user@example.com",
                                     "a@b.c",
                                     "first.last+tag@sub.example.co.uk",
                                     "zoe@bücher.example",
                                     "user@-example.com",
                                     "user@example-.com",
                                     "user@ex-ample.com",
                                     "user@example.com-",
                                     "user@.example.com",
                                     "user@example.com.",
                                     "user@example..com",
                                     "user@example",
                                     ".user@example.com",
                                     "user.@example.com",
                                     "us..er@example.com",
                                     "us.er@example.com",
                                     "@example.com",
                                     "user@",
                                     "user",
                                     "a@b@example.com",
                                     "us er@example.com",
                                     "user@exa_mple.com",
                                     "user\x7f@example.com",
                                     "ü@example.com",
                                     long_local,
                                     too_long_local,
                                     long_domain,
                                     too_long_domain,
                                     "user@1.2",
                                     "user@a.-b",
                                     "user@a.b-"};
    for (const auto& mailbox : mailboxes) {
        INFO(mailbox);
        CHECK(detail::is_plain_mailbox(mailbox) ==
              (detail::mailbox_problem_by_rule(mailbox) == nullptr));
    }
    CHECK(detail::is_plain_mailbox("user@example.com"));
    CHECK_FALSE(detail::is_plain_mailbox("user@example..com"));
}

TEST_CASE("a display name may hold ',' or ';', quoted or not: one entry is one address",
          "[address][names]") {
    struct Case {
        const char* text;
        Address expected;
    };
    const Case cases[] = {
        {"\"Doe, John\" <john@example.com>", {"john@example.com", "Doe, John"}},
        {"\"Doe; John\" <john@example.com>", {"john@example.com", "Doe; John"}},
        {"\"Doe, \\\"JJ\\\" John\" <jj@example.com>", {"jj@example.com", "Doe, \"JJ\" John"}},
        {"\"Back\\\\slash, Inc.\" <bs@example.com>", {"bs@example.com", "Back\\slash, Inc."}},
        // Quoted, a name is taken as written, even one that looks like an address.
        {"\"ann@example.com, Bob\" <bob@example.com>", {"bob@example.com", "ann@example.com, Bob"}},
        // Unquoted it is an RFC 5322 address list of "Doe" and "John <...>"; "Doe" is no address,
        // and an entry here is one address, so the name is everything before the '<'.
        {"Doe, John <john@example.com>", {"john@example.com", "Doe, John"}},
        {"  Doe;  John   <john@example.com>  ", {"john@example.com", "Doe;  John"}},
        {"Acme, Inc.; Sales <sales@example.com>", {"sales@example.com", "Acme, Inc.; Sales"}},
        {"Smith, PhD, Jane <jane@example.com>", {"jane@example.com", "Smith, PhD, Jane"}},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        CHECK(parse_address(c.text, "to[0]") == c.expected);
    }
}

TEST_CASE("several addresses in one entry are refused, not cut down to the last one",
          "[address][names]") {
    // Unquoted, the text before ',' or ';' holds an address: a list pasted into one entry,
    // which must not quietly become one recipient with a long name.
    const char* lists[] = {
        "ann@example.com, Bob <bob@example.com>",
        "ann@example.com; Bob <bob@example.com>",
        "Ann <ann@example.com>, Bob <bob@example.com>",
        "Ann <ann@example.com>; Bob <bob@example.com>",
        "<ann@example.com>, <bob@example.com>",
        "\"Ann\" <ann@example.com>, Bob <bob@example.com>",
        "\"Doe, Ann\" <ann@example.com>, \"Doe, Bob\" <bob@example.com>",
        "ann@example.com, bob@example.com",
    };
    for (const char* text : lists) {
        INFO(text);
        try {
            parse_address(text, "reply_to[0]");
            FAIL("accepted");
        } catch (const InvalidMessage& e) {
            CHECK(e.field() == "reply_to[0]");
        }
    }
    try {
        parse_address("ann@example.com, Bob <bob@example.com>", "cc[2]");
        FAIL("accepted");
    } catch (const InvalidMessage& e) {
        CHECK(std::string(e.what()) ==
              "[sendgrid_backend.invalid_message] cc[2]: 'ann@example.com, Bob <bob@example.com>' "
              "is not a valid email address (holds several addresses: give each its own entry, "
              "or quote a display name that holds ',' or ';')");
    }
}

TEST_CASE("CR, LF or NUL in a display name with ',' is still refused, naming the field",
          "[address][names]") {
    const std::string nul(1, '\0');
    const std::string bad[] = {
        "\"Doe, John\r\nBcc: x@evil.example\" <john@example.com>",
        "Doe, John\r\nBcc: x@evil.example <john@example.com>",
        "\"Doe; John\n\" <john@example.com>",
        "Doe,\rJohn <john@example.com>",
        "\"Doe, " + nul + "John\" <john@example.com>",
        "Doe, John" + nul + " <john@example.com>",
    };
    for (const auto& text : bad) {
        INFO(text);
        try {
            parse_address(text, "bcc[1]");
            FAIL("accepted");
        } catch (const InvalidMessage& e) {
            CHECK(e.field() == "bcc[1]");
            const std::string what = e.what();
            CHECK((what.find("line break (header injection)") != std::string::npos ||
                   what.find("NUL byte") != std::string::npos));
        }
    }
}
