#pragma once

/// @file
/// `testing::SentMails`: what a test double (OutboxTransport, FakeSendgridServer) was given to
/// deliver, with assertions in the spirit of Laravel's `Mail::fake()->assertSent()` and Django's
/// `mail.outbox`. A failed assertion throws `MailAssertionFailed` whose text lists what was sent,
/// so a test framework's failure report says what went wrong without a debugger.
///
/// @code
/// outbox->sent().assert_count(1);
/// const auto& mail = outbox->sent().to("jane@example.com").with_subject("Welcome").only();
/// CHECK(mail.payload["categories"][0] == "welcome");
/// @endcode

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// A mail assertion did not hold; `what()` lists what was sent.
class MailAssertionFailed : public Error {
  public:
    explicit MailAssertionFailed(const std::string& what)
        : Error("sendgrid_backend.mail_assertion", what) {}
};

/// One mail as SendGrid would have received it: the v3 payload and the request's headers.
struct SentMail {
    nlohmann::json payload;
    HttpHeaders headers;
    std::string message_id;  ///< the X-Message-Id it was answered with

    /// The top-level subject, else the first personalization's.
    std::string subject() const {
        if (payload.contains("subject") && payload["subject"].is_string()) {
            return payload["subject"].get<std::string>();
        }
        const auto& list = personalizations();
        if (!list.empty() && list[0].contains("subject") && list[0]["subject"].is_string()) {
            return list[0]["subject"].get<std::string>();
        }
        return "";
    }

    /// Every address of every personalization's to, cc and bcc, in order.
    std::vector<std::string> recipients() const { return recipients_in(payload); }

    /// Whether `address` (without a display name) is among the recipients, in any case.
    bool is_for(std::string_view address) const { return payload_is_for(payload, address); }

    /// The same for a payload that is not (yet) a SentMail.
    static std::vector<std::string> recipients_in(const nlohmann::json& payload) {
        std::vector<std::string> all;
        for_each_recipient(payload, [&all](const std::string& email) {
            all.push_back(email);
            return false;
        });
        return all;
    }
    static bool payload_is_for(const nlohmann::json& payload, std::string_view address) {
        return for_each_recipient(payload, [address](const std::string& email) {
            return sendgrid_backend::detail::iequals(email, address);
        });
    }

    /// "'<subject>' to a@x.com, b@y.com": one line for failure reports.
    std::string summary() const {
        std::string line = "'" + subject() + "' to ";
        const auto all = recipients();
        for (std::size_t i = 0; i < all.size(); ++i) line += (i ? ", " : "") + all[i];
        return all.empty() ? line + "nobody" : line;
    }

  private:
    const nlohmann::json& personalizations() const { return personalizations_in(payload); }

    static const nlohmann::json& personalizations_in(const nlohmann::json& payload) {
        static const nlohmann::json none = nlohmann::json::array();
        if (!payload.is_object()) return none;
        const auto found = payload.find("personalizations");
        return found != payload.end() && found->is_array() ? *found : none;
    }

    /// Calls `visit` with each recipient's email until it returns true; returns whether it did.
    template <class Visit>
    static bool for_each_recipient(const nlohmann::json& payload, Visit visit) {
        for (const auto& personalization : personalizations_in(payload)) {
            if (!personalization.is_object()) continue;
            for (const char* field : {"to", "cc", "bcc"}) {
                const auto list = personalization.find(field);
                if (list == personalization.end() || !list->is_array()) continue;
                for (const auto& address : *list) {
                    if (!address.is_object()) continue;
                    const auto email = address.find("email");
                    if (email != address.end() && email->is_string() &&
                        visit(email->get_ref<const std::string&>())) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
};

/// A list of sent mails, filtered and asserted on. See the file comment.
class SentMails {
  public:
    SentMails() : all_(std::make_shared<const std::vector<SentMail>>()) {}
    explicit SentMails(std::vector<SentMail> mails)
        : mails_(std::move(mails)), all_(std::make_shared<const std::vector<SentMail>>(mails_)) {}

    std::size_t count() const noexcept { return mails_.size(); }
    bool empty() const noexcept { return mails_.empty(); }
    const SentMail& operator[](std::size_t i) const { return mails_.at(i); }
    auto begin() const noexcept { return mails_.begin(); }
    auto end() const noexcept { return mails_.end(); }

    /// Those that went to `address` (to, cc or bcc).
    SentMails to(std::string_view address) const {
        return where([address](const SentMail& mail) { return mail.is_for(address); },
                     "to " + std::string(address));
    }

    /// Those whose subject is `subject`.
    SentMails with_subject(std::string_view subject) const {
        return where([subject](const SentMail& mail) { return mail.subject() == subject; },
                     "with subject '" + std::string(subject) + "'");
    }

    /// Those `predicate` accepts; `description` names the filter in failure reports.
    SentMails where(const std::function<bool(const SentMail&)>& predicate,
                    const std::string& description = "matching a predicate") const {
        SentMails kept;
        kept.all_ = all_;
        kept.filters_ = filters_.empty() ? description : filters_ + ", " + description;
        for (const auto& mail : mails_) {
            if (predicate(mail)) kept.mails_.push_back(mail);
        }
        return kept;
    }

    /// @throws MailAssertionFailed unless exactly `expected` mails are here.
    const SentMails& assert_count(std::size_t expected) const {
        if (count() != expected) {
            fail("expected " + mails(expected) + described(),
                 "found " + (empty() ? std::string("none") : std::to_string(count())));
        }
        return *this;
    }

    /// @throws MailAssertionFailed unless at least one mail went to `address`.
    const SentMails& assert_sent_to(std::string_view address) const {
        if (to(address).empty()) {
            fail("expected a mail to " + std::string(address) + described(), "found none");
        }
        return *this;
    }

    /// @throws MailAssertionFailed if any mail is here.
    const SentMails& assert_nothing_sent() const { return assert_count(0); }

    /// The one mail here. @throws MailAssertionFailed when there are none or several.
    const SentMail& only() const {
        assert_count(1);
        return mails_.front();
    }

    /// One line per mail, numbered.
    std::string describe() const { return describe(mails_); }

  private:
    std::string described() const { return filters_.empty() ? "" : " " + filters_; }

    static std::string describe(const std::vector<SentMail>& mails) {
        if (mails.empty()) return "(nothing)";
        std::string text;
        for (std::size_t i = 0; i < mails.size(); ++i) {
            text += "\n  [" + std::to_string(i) + "] " + mails[i].summary();
        }
        return text;
    }

    /// "no mail", "1 mail", "3 mails".
    static std::string mails(std::size_t count) {
        if (count == 0) return "no mail";
        return std::to_string(count) + (count == 1 ? " mail" : " mails");
    }

    /// Reports everything that was sent, not only what the filters kept: "expected 1 mail to
    /// a@x.com, found none; 2 mails were sent: [0] ...", or "..., but no mail was sent".
    [[noreturn]] void fail(const std::string& expectation, const std::string& found) const {
        if (all_->empty()) throw MailAssertionFailed(expectation + ", but no mail was sent");
        throw MailAssertionFailed(expectation + ", " + found + "; " + mails(all_->size()) +
                                  (all_->size() == 1 ? " was" : " were") +
                                  " sent:" + describe(*all_));
    }

    std::vector<SentMail> mails_;
    std::shared_ptr<const std::vector<SentMail>> all_;
    std::string filters_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
