// Internals that payloads and webhooks rely on: base64, UTF-8 validation, MIME type guesses.
#include <boost/beast/core/detail/base64.hpp>
#include <sendgrid_backend/detail/json/scan.hpp>
#include <sendgrid_backend/detail/json/sinks.hpp>
#include <sendgrid_backend/detail/text/base64.hpp>
#include <sendgrid_backend/detail/text/mime_types.hpp>
#include <sendgrid_backend/detail/text/strings.hpp>

#include <algorithm>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "catch.hpp"

namespace detail = sendgrid_backend::detail;

TEST_CASE("base64 matches the RFC 4648 test vectors", "[detail][base64]") {
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"foobarbaz!", "Zm9vYmFyYmF6IQ=="},
    };
    for (const auto& [plain, encoded] : vectors) {
        CHECK(detail::base64_encode(plain) == encoded);
        CHECK(detail::base64_decode(encoded) == std::optional<std::string>(plain));
    }
    CHECK(detail::base64_encode(std::string("\xff\xfe\x00\x01", 4)) == "//4AAQ==");
}

TEST_CASE("base64 round-trips random bytes of every length up to 100", "[detail][base64]") {
    std::mt19937 random(42);
    for (std::size_t length = 0; length <= 100; ++length) {
        std::string bytes(length, '\0');
        for (char& c : bytes) c = static_cast<char>(random() & 0xff);
        const std::string encoded = detail::base64_encode(bytes);
        CHECK(encoded.size() == detail::base64_encoded_size(length));
        CHECK(detail::base64_decode(encoded) == std::optional<std::string>(bytes));
    }
}

TEST_CASE("base64 decoding refuses malformed input", "[detail][base64]") {
    for (const char* bad : {"Zg=", "Zg=a", "Z===", "Zm9v!A==", "Zm 9v", "=Zm9"}) {
        INFO(bad);
        CHECK_FALSE(detail::base64_decode(bad).has_value());
    }
}

TEST_CASE("UTF-8 validation", "[detail][utf8]") {
    CHECK(detail::is_valid_utf8(""));
    CHECK(detail::is_valid_utf8("plain ascii that is longer than eight bytes"));
    CHECK(detail::is_valid_utf8("caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x8e\x89"));
    CHECK_FALSE(detail::is_valid_utf8("\xc3"));              // truncated
    CHECK_FALSE(detail::is_valid_utf8("abcdefgh\xc3"));      // truncated after the fast path
    CHECK_FALSE(detail::is_valid_utf8("\xc0\xaf"));          // overlong
    CHECK_FALSE(detail::is_valid_utf8("\xe0\x80\xaf"));      // overlong
    CHECK_FALSE(detail::is_valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(detail::is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(detail::is_valid_utf8("\xff"));
    CHECK_FALSE(detail::is_valid_utf8("\x80"));  // lone continuation
}

TEST_CASE("MIME types from file names and extensions from MIME types", "[detail][mime]") {
    CHECK(detail::guess_mimetype("report.PDF") == "application/pdf");
    CHECK(detail::guess_mimetype("photo.jpeg") == "image/jpeg");
    CHECK(detail::guess_mimetype("archive.tar.gz") == "application/gzip");
    CHECK(detail::guess_mimetype("noextension") == "application/octet-stream");
    CHECK(detail::guess_mimetype("trailingdot.") == "application/octet-stream");
    CHECK(detail::guess_extension("image/png") == ".png");
    CHECK(detail::guess_extension("text/html; charset=utf-8") == ".html");
    CHECK(detail::guess_extension("application/x-unknown") == ".bin");
}

TEST_CASE("base64 agrees with Boost.Beast's on every length, and decodes back",
          "[detail][base64]") {
    std::mt19937 random(7);
    for (std::size_t length = 0; length <= 300; ++length) {
        std::string bytes(length, '\0');
        for (char& c : bytes) c = static_cast<char>(random() & 0xff);
        std::string beast(boost::beast::detail::base64::encoded_size(length), '\0');
        beast.resize(boost::beast::detail::base64::encode(beast.data(), bytes.data(), length));
        const std::string encoded = detail::base64_encode(bytes);
        INFO("length " << length);
        CHECK(encoded == beast);
        CHECK(detail::base64_decode(encoded) == bytes);
    }
}

TEST_CASE("decimal parsing for headers and numbers sent as strings", "[detail][text]") {
    CHECK(detail::parse_decimal("0") == 0);
    CHECK(detail::parse_decimal("1600112502") == 1600112502);
    CHECK_FALSE(detail::parse_decimal("").has_value());
    CHECK_FALSE(detail::parse_decimal(" 7").has_value());
    CHECK_FALSE(detail::parse_decimal("-1").has_value());
    CHECK_FALSE(detail::parse_decimal("12a").has_value());
    CHECK_FALSE(detail::parse_decimal("1234567890123", 12).has_value());
    CHECK(detail::parse_decimal("123456789012", 12) == 123456789012);
}

TEST_CASE("trimming spaces and tabs", "[detail][text]") {
    CHECK(detail::trim("") == "");
    CHECK(detail::trim(" \t \t") == "");
    CHECK(detail::trim("a") == "a");
    CHECK(detail::trim(" \ta b\t ") == "a b");
    CHECK(detail::trim("x ") == "x");
    CHECK(detail::trim("\tx") == "x");
    CHECK(detail::trim("\nx\n") == "\nx\n");  // only spaces and tabs are blanks here
}

TEST_CASE("line breaks anywhere in short and long texts", "[detail][text]") {
    CHECK_FALSE(detail::has_line_break(""));
    CHECK_FALSE(detail::has_line_break("no break here, \t tabs are fine"));
    CHECK(detail::has_line_break("\r"));
    CHECK(detail::has_line_break("\nstart"));
    CHECK(detail::has_line_break("end\r"));
    std::string long_text(1000, 'a');
    CHECK_FALSE(detail::has_line_break(long_text));
    for (std::size_t at : {0, 31, 32, 500, 999}) {
        std::string with_break = long_text;
        with_break[at] = (at % 2) ? '\r' : '\n';
        CHECK(detail::has_line_break(with_break));
    }
}

TEST_CASE("printable ASCII: every byte value at every offset of texts up to 20 bytes",
          "[detail][text]") {
    // Against the byte-by-byte definition: the eight-at-a-time check has a short-text path,
    // whole words and an overlapping last word.
    auto by_byte = [](const std::string& text) {
        for (char c : text) {
            const auto u = static_cast<unsigned char>(c);
            if (u < 0x20 || u > 0x7e) return false;
        }
        return true;
    };
    CHECK(detail::is_printable_ascii(""));
    for (std::size_t length = 1; length <= 20; ++length) {
        const std::string clean(length, 'a');
        CHECK(detail::is_printable_ascii(clean));
        for (std::size_t at = 0; at < length; ++at) {
            for (int value = 0; value < 256; ++value) {
                std::string text = clean;
                text[at] = static_cast<char>(value);
                if (detail::is_printable_ascii(text) != by_byte(text)) {
                    FAIL_CHECK("length " << length << ", byte " << value << " at " << at);
                }
            }
        }
    }
}

TEST_CASE("a string's run of plain characters ends at the first quote, escape or control byte",
          "[detail][json]") {
    // Every byte value at every offset of runs up to 20 bytes (eight at a time, then the rest),
    // against the plain definition, one byte at a time; and whether the run holds a byte above
    // 0x7f (bytes past the run's end do not count).
    for (std::size_t size = 0; size <= 20; ++size) {
        for (std::size_t offset = 0; offset < std::max<std::size_t>(size, 1); ++offset) {
            for (int value = 0; value < 256; ++value) {
                std::string text(size, 'a');
                if (offset < size) text[offset] = static_cast<char>(value);
                // A second byte further on, so that a flag past the first cannot be taken for it.
                if (offset + 3 < size) text[offset + 3] = '"';
                if (offset + 5 < size) text[offset + 5] = '\xff';  // past the run's end
                std::size_t expected = 0;
                bool expected_beyond_ascii = false;
                while (expected < text.size()) {
                    const auto c = static_cast<unsigned char>(text[expected]);
                    if (c == '"' || c == '\\' || c < 0x20) break;
                    expected_beyond_ascii = expected_beyond_ascii || c > 0x7f;
                    ++expected;
                }
                const detail::JsonScanner scan(text);
                INFO("size " << size << ", byte " << value << " at " << offset);
                bool beyond_ascii = !expected_beyond_ascii;
                REQUIRE(scan.plain_run_end(beyond_ascii) == expected);
                REQUIRE(beyond_ascii == expected_beyond_ascii);
            }
        }
    }
}

TEST_CASE("JSON strings: every character that needs escaping, at every offset", "[detail][json]") {
    // The scanner looks at 8 bytes at a time: put each special character before, inside and
    // after a block, in texts of every length up to 40, and compare with nlohmann's output.
    const std::string specials = std::string("\"\\\b\f\n\r\t\x01\x1f", 9) + '\0';
    for (std::size_t length = 0; length <= 40; ++length) {
        for (std::size_t at = 0; at < length; ++at) {
            for (char special : specials) {
                std::string text(length, 'a');
                text[at] = special;
                if (length > 2) text[length - 1] = '\x7f';  // not escaped by either
                detail::JsonTextSink sink;
                sink.string(text);
                INFO("length " << length << ", at " << at << ", char " << int(special));
                REQUIRE(sink.take() == nlohmann::json(text).dump());
            }
        }
        detail::JsonTextSink plain;
        plain.string(std::string(length, 'z'));
        CHECK(plain.take() == nlohmann::json(std::string(length, 'z')).dump());
    }
    detail::JsonTextSink utf8;
    utf8.string("Zo\xc3\xab \xe2\x82\xac");  // passes as it is
    CHECK(utf8.take() == "\"Zo\xc3\xab \xe2\x82\xac\"");
}
