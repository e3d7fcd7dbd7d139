// libFuzzer harness for address parsing: any text is either one valid address or a clean
// InvalidMessage naming the field; an accepted address has one '@', no line break, valid UTF-8,
// and parses again to itself. The one-pass mailbox check agrees with the rule-by-rule one, and
// the printable-ASCII check with a byte loop.
#include <sendgrid_backend/address.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    namespace sg = sendgrid_backend;
    if (sg::detail::is_plain_mailbox(text) !=
        (sg::detail::mailbox_problem_by_rule(text) == nullptr)) {
        fuzz::fail("the one-pass mailbox check disagrees with the rules");
    }
    bool printable = true;
    for (char c : text) printable = printable && c >= 0x20 && c <= 0x7e;
    if (sg::detail::is_printable_ascii(text) != printable) {
        fuzz::fail("the word-at-a-time printable check disagrees with the byte loop");
    }
    try {
        const sg::Address address = sg::parse_address(text, "to[0]");
        if (address.email.find('@') == std::string::npos) fuzz::fail("no '@'");
        if (address.email.find('@') != address.email.rfind('@')) fuzz::fail("two '@'");
        if (sg::detail::has_line_break(address.email) || sg::detail::has_line_break(address.name)) {
            fuzz::fail("a line break got through");
        }
        if (!sg::detail::is_valid_utf8(address.email) || !sg::detail::is_valid_utf8(address.name)) {
            fuzz::fail("invalid UTF-8 got through");
        }
        if (sg::parse_address(address.email, "again").email != address.email) {
            fuzz::fail("the email does not parse to itself");
        }
    } catch (const sg::InvalidMessage& invalid) {
        if (invalid.field() != "to[0]") fuzz::fail("the error names another field");
    }
    return 0;
}
