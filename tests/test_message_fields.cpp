// The schema (message_fields.hpp) against every form of a message. A message with every field of
// the table filled with a value of its own must come back whole from stored JSON, show every
// value in the echo, and carry every value in SendGrid's payload that the payload has a place
// for. A field lost on any path fails here, naming it.
#include <sendgrid_backend/detail/message_echo.hpp>
#include <sendgrid_backend/detail/text/base64.hpp>
#include <sendgrid_backend/message_fields.hpp>
#include <sendgrid_backend/message_json.hpp>
#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#ifdef SENDGRID_BACKEND_PAYLOAD_DIR
#include "payload_recorder.hpp"
#endif

// A named namespace, not an anonymous one: the tests are compiled as unity builds, where the
// helpers of several test files share one unit.
namespace test_message_fields {

namespace sg = sendgrid_backend;
using sg::detail::FieldKind;
using sg::detail::MessageFields;

// --- Walking the table ---

template <class T>
constexpr bool has_table = sg::detail::is_complete<MessageFields<T>>::value;

template <class T>
struct Inner {  // what an optional or a list holds
    using type = void;
};
template <class T>
struct Inner<std::optional<T>> {
    using type = T;
};
template <class T>
struct Inner<std::vector<T>> {
    using type = T;
};

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

/// Calls visit(path, value, kind) for every field of `s` that is not a nested struct, going
/// into nested structs (those set, every item of a list). `S` may be const.
template <class S, class Visit>
void walk(S& s, const std::string& prefix, Visit& visit);

template <class T, class Visit>
void walk_value(T& value, const std::string& path, FieldKind kind, Visit& visit) {
    using V = std::remove_const_t<T>;
    using I = typename Inner<V>::type;
    if constexpr (has_table<V>) {
        walk(value, path + ".", visit);
    } else if constexpr (has_table<I> && IsOptional<V>::value) {
        if (value) walk(*value, path + ".", visit);
    } else if constexpr (has_table<I>) {
        for (std::size_t i = 0; i < value.size(); ++i) {
            walk(value[i], sg::detail::indexed(path, i) + ".", visit);
        }
    } else {
        visit(path, value, kind);
    }
}

template <class S, class Visit>
void walk(S& s, const std::string& prefix, Visit& visit) {
    MessageFields<std::remove_const_t<S>>::each([&](const auto& field) {
        walk_value(s.*field.member, prefix + field.name, field.kind, visit);
    });
}

/// `path` without its indexes: "personalizations[1].to" -> "personalizations.to".
std::string field_of(const std::string& path) {
    std::string field;
    bool in_index = false;
    for (char c : path) {
        if (c == '[') in_index = true;
        if (!in_index) field += c;
        if (c == ']') in_index = false;
    }
    return field;
}

// --- Filling every field ---

/// Fills every field with a value of its own: "v001", "v002", ... (numbers 1700000001, ...),
/// shaped where the payload wants a shape (addresses, types, names of headers), so that the
/// filled message is one SendGrid accepts.
class Filler {
  public:
    template <class S>
    void fill(S& s, const std::string& prefix) {
        MessageFields<S>::each([&](const auto& field) {
            set(s.*field.member, prefix + field.name, field.name, field.kind);
        });
    }

  private:
    std::string token() {
        char text[8];
        std::snprintf(text, sizeof text, "v%03d", ++count_);
        return text;
    }
    std::int64_t number() { return 1'700'000'000 + ++count_; }

    void set(std::string& value, const std::string& path, const std::string& name, FieldKind kind) {
        static const char* const addresses[] = {"from_email", "to",       "cc",
                                                "bcc",        "reply_to", "reply_to_list"};
        for (const char* address : addresses) {
            if (name == address) {
                value = token() + "@example.com";
                return;
            }
        }
        if (kind == FieldKind::bytes) {
            value = std::string("\x00\xff bytes of ", 12) + token();
        } else if (name == "content_subtype") {
            value = "html";  // not the default "plain"
        } else if (name == "mimetype") {
            value = (field_of(path) == "alternatives.mimetype" ? "text/x-" : "application/x-") +
                    token();
        } else if (name == "filename") {
            value = token() + ".txt";
        } else if (name == "template_id") {
            value = "d-" + token();
        } else {
            value = token();
        }
    }
    void set(std::optional<std::string>& value, const std::string& path, const std::string& name,
             FieldKind kind) {
        value.emplace();
        set(*value, path, name, kind);
    }
    void set(std::vector<std::string>& values, const std::string& path, const std::string& name,
             FieldKind kind) {
        values.resize(name == "reply_to" ? 1 : 2);  // SendGrid has one reply-to
        for (auto& value : values) set(value, path, name, kind);
    }
    void set(std::map<std::string, std::string>& values, const std::string&, const std::string&,
             FieldKind) {
        for (int i = 0; i < 2; ++i) values["X-" + token()] = token();
    }
    void set(bool& value, const std::string&, const std::string&, FieldKind) {
        value = !value;  // not the default
    }
    void set(std::optional<bool>& value, const std::string&, const std::string&, FieldKind) {
        value = ++count_ % 2 == 0;
    }
    void set(std::int64_t& value, const std::string&, const std::string&, FieldKind) {
        value = number();
    }
    void set(std::optional<std::int64_t>& value, const std::string&, const std::string&,
             FieldKind) {
        value = number();
    }
    void set(std::vector<std::int64_t>& values, const std::string&, const std::string&, FieldKind) {
        values = {number(), number()};
    }
    void set(sg::TemplateData& value, const std::string&, const std::string&, FieldKind) {
        value = nlohmann::json{{"key_" + token(), token()}};
    }
    template <class S>
    void set(std::optional<S>& value, const std::string& path, const std::string&, FieldKind) {
        fill(value.emplace(), path + ".");
    }
    template <class S>
    void set(std::vector<S>& items, const std::string& path, const std::string&, FieldKind) {
        items.resize(2);
        for (std::size_t i = 0; i < items.size(); ++i) {
            fill(items[i], sg::detail::indexed(path, i) + ".");
        }
    }
    template <class S>
    void set(S& value, const std::string& path, const std::string&, FieldKind) {
        fill(value, path + ".");
    }

    int count_ = 0;
};

sg::EmailMessage filled_message() {
    sg::EmailMessage message;
    Filler().fill(message, "");
    return message;
}

// --- What a field holds, as text ---

std::string show(const std::string& value) { return '"' + value + '"'; }
std::string show(bool value) { return value ? "true" : "false"; }
std::string show(std::int64_t value) { return std::to_string(value); }
std::string show(const sg::TemplateData& value) { return value ? value->dump() : "(none)"; }
std::string show(const std::map<std::string, std::string>& values) {
    std::string text;
    for (const auto& [key, value] : values) text += show(key) + "=" + show(value) + " ";
    return "{" + text + "}";
}
template <class T>
std::string show(const std::vector<T>& values) {
    std::string text;
    for (const auto& value : values) text += show(value) + " ";
    return "[" + text + "]";
}
template <class T>
std::string show(const std::optional<T>& value) {
    return value ? "set " + show(*value) : "(unset)";
}

/// Every field of `s` (nested ones by their path) and what it holds.
template <class S>
std::map<std::string, std::string> fields_of(const S& s) {
    std::map<std::string, std::string> fields;
    auto visit = [&](const std::string& path, const auto& value, FieldKind) {
        fields[path] = show(value);
    };
    walk(s, "", visit);
    return fields;
}

/// The texts that show a field's value in an output; none for a flag (flipped instead).
std::vector<std::string> texts(const std::string& value, FieldKind) { return {value}; }
std::vector<std::string> texts(const std::optional<std::string>& value, FieldKind) {
    return {*value};
}
std::vector<std::string> texts(const std::vector<std::string>& values, FieldKind) { return values; }
std::vector<std::string> texts(const std::map<std::string, std::string>& values, FieldKind) {
    std::vector<std::string> all;
    for (const auto& [key, value] : values) {
        all.push_back(key);
        all.push_back(value);
    }
    return all;
}
std::vector<std::string> texts(bool, FieldKind) { return {}; }
std::vector<std::string> texts(const std::optional<bool>&, FieldKind) { return {}; }
[[maybe_unused]] std::vector<std::string> texts(std::int64_t value, FieldKind) {
    return {std::to_string(value)};
}
std::vector<std::string> texts(const std::optional<std::int64_t>& value, FieldKind) {
    return {std::to_string(*value)};
}
std::vector<std::string> texts(const std::vector<std::int64_t>& values, FieldKind) {
    std::vector<std::string> all;
    for (std::int64_t value : values) all.push_back(std::to_string(value));
    return all;
}
std::vector<std::string> texts(const sg::TemplateData& value, FieldKind) {
    std::vector<std::string> all;
    for (const auto& [key, item] : value->items()) {
        all.push_back(key);
        all.push_back(item.get<std::string>());
    }
    return all;
}

/// One field of the filled message: where it is, and what shows it in an output.
struct Leaf {
    std::string path;
    std::string field;                 ///< the path without indexes
    std::vector<std::string> texts;    ///< each must appear; none: a flag, checked by flipping
    std::optional<std::string> bytes;  ///< a bytes field's value, which outputs encode
};

std::vector<Leaf> leaves_of(const sg::EmailMessage& message) {
    std::vector<Leaf> leaves;
    auto visit = [&](const std::string& path, const auto& value, FieldKind kind) {
        Leaf leaf{path, field_of(path), {}, std::nullopt};
        if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>) {
            if (kind == FieldKind::bytes) leaf.bytes = value;
        }
        if (!leaf.bytes) leaf.texts = texts(value, kind);
        // Both the echo and the payload spell the body's subtype as a type: "text/html".
        if (leaf.field == "content_subtype") leaf.texts = {"text/" + leaf.texts.at(0)};
        leaves.push_back(std::move(leaf));
    };
    walk(message, "", visit);
    return leaves;
}

/// `message` with the flag at `path` flipped.
sg::EmailMessage flipped(sg::EmailMessage message, const std::string& path) {
    bool found = false;
    auto visit = [&](const std::string& at, auto& value, FieldKind) {
        using V = std::decay_t<decltype(value)>;
        if (at != path) return;
        if constexpr (std::is_same_v<V, bool>) {
            value = !value;
            found = true;
        } else if constexpr (std::is_same_v<V, std::optional<bool>>) {
            value = !*value;
            found = true;
        }
    };
    walk(message, "", visit);
    REQUIRE(found);
    return message;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

std::string echo(const sg::EmailMessage& message) {
    std::string text;
    sg::detail::append_echo(text, message);
    return text;
}

/// Checks that `output(message)` shows every field of `message` but those `not_shown` lists:
/// its texts appear (a bytes field as `spell_bytes` spells it), or, for a flag, flipping it
/// changes the output.
template <class Output, class SpellBytes>
void check_every_field_shown(const sg::EmailMessage& message, Output output, SpellBytes spell_bytes,
                             const std::map<std::string, std::string>& not_shown) {
    const std::string text = output(message);
    INFO(text);
    std::size_t checked = 0;
    for (const Leaf& leaf : leaves_of(message)) {
        INFO("field " << leaf.path);
        bool skipped = false;
        for (const auto& [field, reason] : not_shown) {
            if (leaf.field == field || leaf.field.rfind(field + ".", 0) == 0) skipped = true;
        }
        if (skipped) continue;
        ++checked;
        if (leaf.bytes) {
            CHECK(contains(text, spell_bytes(*leaf.bytes)));
        } else if (leaf.texts.empty()) {
            CHECK(output(flipped(message, leaf.path)) != text);
        }
        for (const std::string& part : leaf.texts) CHECK(contains(text, part));
    }
    CHECK(checked > 20);
}

/// Checks, for `S` and every struct below it, that a default one and a filled one differ in
/// each entry of the table: the filler misses no field, and the table has no entry that a
/// value cannot show (a nested struct differs in what its fields hold).
template <class S>
std::size_t check_every_entry_filled() {
    S filled;
    Filler().fill(filled, "");
    const S defaults{};
    std::size_t entries = 0;
    MessageFields<S>::each([&](const auto& field) {
        ++entries;
        INFO("table entry " << field.name);
        const auto& a = defaults.*field.member;
        const auto& b = filled.*field.member;
        using M = std::decay_t<decltype(a)>;
        using I = typename Inner<M>::type;
        if constexpr (has_table<M>) {
            CHECK(fields_of(a) != fields_of(b));
            entries += check_every_entry_filled<M>();
        } else if constexpr (has_table<I>) {
            CHECK_FALSE(sg::detail::holds_value(a));
            CHECK(sg::detail::holds_value(b));
            entries += check_every_entry_filled<I>();
        } else {
            CHECK(show(a) != show(b));
        }
    });
    return entries;
}

std::string payload(const std::string& name, const sg::EmailMessage& message) {
#ifdef SENDGRID_BACKEND_PAYLOAD_DIR
    test_support::build(name, message);  // recorded for the payload_schema test
#else
    (void)name;
#endif
    return sg::serialize_payload(message);
}

TEST_CASE("every entry of every table is filled with a value of its own", "[message_fields]") {
    const std::size_t entries = check_every_entry_filled<sg::EmailMessage>();
    CHECK(entries > 60);
    // Each text, number and key is its own: no two fields could stand in for each other.
    std::map<std::string, std::string> seen;
    for (const Leaf& leaf : leaves_of(filled_message())) {
        for (const std::string& text : leaf.texts) {
            const auto [first, added] = seen.emplace(text, leaf.path);
            INFO(leaf.path << " and " << first->second << " hold " << text);
            CHECK(added);
        }
    }
}

TEST_CASE("stored JSON keeps every field", "[message_fields][message_json]") {
    const sg::EmailMessage original = filled_message();
    const sg::EmailMessage copy = sg::deserialize_message(sg::serialize_message(original));
    const auto before = fields_of(original);
    const auto after = fields_of(copy);
    for (const auto& [path, value] : before) {
        INFO("field " << path);
        CHECK(after.count(path) == 1);
        if (after.count(path) == 1) CHECK(after.at(path) == value);
    }
    CHECK(after.size() == before.size());
    CHECK(before.size() > 60);
}

TEST_CASE("the echo shows every field", "[message_fields][echo]") {
    const sg::EmailMessage message = filled_message();
    const std::map<std::string, std::string> shown_as_size = {
        {"alternatives.content", "a body part: its [alternative type, size] line shows it"}};
    check_every_field_shown(
        message, echo,
        // A file's content: its [attachment name, size] line shows it.
        [](const std::string& bytes) { return ", " + std::to_string(bytes.size()) + " bytes]"; },
        shown_as_size);
    const std::string text = echo(message);
    for (const auto& alternative : message.alternatives) {
        CHECK(contains(text, "[alternative " + alternative.mimetype + ", " +
                                 std::to_string(alternative.content.size()) + " bytes]\n"));
    }
    for (const auto& attachment : message.attachments) {
        CHECK(contains(text, "[attachment " + attachment.filename + ", " +
                                 std::to_string(attachment.content.size()) + " bytes]\n"));
    }
}

TEST_CASE("the echo keeps its head and adds a line per other field it holds",
          "[message_fields][echo]") {
    sg::EmailMessage message("Hi", "Hello", "shop@example.com", {"jane@example.com"}, {},
                             {"audit@example.com"});
    message.extra_headers = {{"X-Tag", "t"}};
    message.attach_alternative("<p>Hello</p>", "text/html");
    message.attach_inline("logo", "logo.png", "PNG", "image/png");
    message.categories = {"welcome", "onboarding"};
    message.custom_args = {{"order", "42"}};
    message.send_at = 1'800'000'000;
    message.mail_settings.footer = sg::Footer{false, "f", ""};
    message.dynamic_template_data = nlohmann::json{{"name", "Jane"}};
    CHECK(echo(message) ==
          "From: shop@example.com\n"
          "To: jane@example.com\n"
          "Subject: Hi\n"
          "X-Tag: t\n"
          "Content-Type: text/plain; charset=utf-8\n"
          "\n"
          "Hello\n"
          "[alternative text/html, 12 bytes]\n"
          "[attachment logo.png, 3 bytes]\n"
          "bcc: audit@example.com\n"
          "attachments[0].mimetype: image/png\n"
          "attachments[0].content_id: logo\n"
          "dynamic_template_data: {\"name\":\"Jane\"}\n"
          "categories: welcome, onboarding\n"
          "custom_args[\"order\"]: 42\n"
          "send_at: 1800000000\n"
          "mail_settings.footer.enable: false\n"
          "mail_settings.footer.text: f\n" +
              std::string(79, '-') + "\n");
    // A plain message: the head alone, as before the schema.
    CHECK(echo(sg::EmailMessage("Hi", "Hello", "shop@example.com", {"jane@example.com"})) ==
          "From: shop@example.com\nTo: jane@example.com\nSubject: Hi\n"
          "Content-Type: text/plain; charset=utf-8\n\nHello\n" +
              std::string(79, '-') + "\n");
}

TEST_CASE("the payload carries every field it has a place for, with and without a template",
          "[message_fields][payload]") {
    using Fields = std::map<std::string, std::string>;
    // Fields the payload does not carry by design, and why.
    const Fields envelope_from_personalizations = {
        {"to", "every personalization here has its own; the message's fill only empty ones"},
        {"cc", "as to"},
        {"bcc", "as to"},
        {"substitutions", "as to"},
        {"dynamic_template_data", "as to"},
        {"custom_args", "as to"},
        {"send_at", "as to"},
        {"make_private", "splits the message's own to; explicit personalizations win"},
        {"reply_to_list", "cleared here: SendGrid takes reply_to or reply_to_list, not both"},
    };
    const Fields envelope_from_message = {
        {"personalizations", "cleared here: the envelope comes from the message's fields"},
        {"reply_to", "cleared here: reply_to_list is sent, and SendGrid takes one of the two"},
    };
    const Fields without_template = {
        {"template_id", "cleared here: the case without a template"},
    };
    const Fields with_template = {
        {"body", "a template's content replaces the message's"},
        {"content_subtype", "as body"},
        {"alternatives", "as body"},
    };
    const Fields with_template_and_personalizations = {
        {"subject",
         "with a template no top-level subject is sent, and each personalization "
         "here has its own"},
    };
    const auto merged = [](std::initializer_list<const Fields*> lists) {
        Fields all;
        for (const Fields* list : lists) all.insert(list->begin(), list->end());
        return all;
    };
    struct Case {
        const char* name;
        bool personalized;
        bool with_template;
        Fields not_carried;
    };
    const Case cases[] = {
        {"personalized", true, false, merged({&envelope_from_personalizations, &without_template})},
        {"personalized_template", true, true,
         merged({&envelope_from_personalizations, &with_template,
                 &with_template_and_personalizations})},
        {"from_message", false, false, merged({&envelope_from_message, &without_template})},
        {"from_message_template", false, true, merged({&envelope_from_message, &with_template})},
    };
    const sg::EmailMessage message = filled_message();
    for (const Case& c : cases) {
        SECTION(c.name) {
            const auto shape = [&c](sg::EmailMessage m) {
                if (!c.with_template) m.template_id.clear();
                if (c.personalized) {
                    m.reply_to_list.clear();
                } else {
                    m.personalizations.clear();
                    m.reply_to.clear();
                }
                return m;
            };
            const std::string name = std::string("message_fields_") + c.name;
            check_every_field_shown(
                message, [&](const sg::EmailMessage& m) { return payload(name, shape(m)); },
                [](const std::string& bytes) { return sg::detail::base64_encode(bytes); },
                c.not_carried);
            // Recorded last, so that the file holds the message itself, not a flipped one.
            payload(name, shape(message));
        }
    }
}

}  // namespace test_message_fields
