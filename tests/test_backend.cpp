// SendgridBackend's contract without sockets: every message handed to send_messages gets exactly
// one sendgrid_email_sent emission, on the caller's thread, as soon as its outcome is final,
// whatever the message, the handlers or the transport did; SendError and BrokenTransport, with
// and without fail_silently; the pre-send hook; the outcome fields. The transport is scripted
// (support/scripted_transport.hpp) and time is a FakeClock: no libcurl, no cpp-httplib, so every
// build tests the contract. test_mail.cpp tests what needs the real HTTP path.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <ios>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/scripted_transport.hpp"

// Everything in its own namespace: the test programs may compile this file in one unity
// translation unit with others, whose helpers have the same names.
namespace backend_contract {

using namespace std::chrono_literals;
using sendgrid_backend::BackendOptions;
using sendgrid_backend::BrokenTransport;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::SendError;
using sendgrid_backend::SendgridBackend;
using sendgrid_backend::SendOutcome;
using sendgrid_backend::SendStatus;
using sendgrid_backend::Settings;
using sendgrid_backend::TransportError;
using test_support::Step;

namespace {

const std::string api_key = "SG.scripted-key";

EmailMessage make_message(const std::string& subject, const std::string& to = "jane@example.com") {
    return EmailMessage(subject, "Body of " + subject, "Shop <shop@example.com>", {to});
}

std::vector<EmailMessage> messages_with_subjects(const std::vector<std::string>& subjects) {
    std::vector<EmailMessage> batch;
    for (const auto& subject : subjects) batch.push_back(make_message(subject));
    return batch;
}

/// The subject of the payload in `body`: the scripted transport's key for a request.
std::string subject_of(const std::string& body) {
    return nlohmann::json::parse(body).at("subject").get<std::string>();
}

std::string what_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "?";
    }
}

/// Records every sendgrid_email_sent emission while it lives: by whom, for which message, on
/// which thread, when in fake time, and how many tries the transport had been handed by then.
struct Emissions {
    struct Seen {
        const SendgridBackend* sender;
        std::string subject;
        bool fail_flag;
        SendOutcome outcome;
        std::thread::id thread;
        long long at_ms;            ///< fake time; -1 without a clock
        std::size_t starts_before;  ///< tries the scripted transport had started
    };
    std::mutex mutex;
    std::vector<Seen> seen;
    sendgrid_backend::ScopedConnection connection;

    explicit Emissions(const test_support::FakeClock* clock = nullptr,
                       const test_support::ScriptedTransport* transport = nullptr) {
        connection = sendgrid_backend::sendgrid_email_sent.connect(
            [this, clock, transport](const SendgridBackend& sender, const EmailMessage& message,
                                     bool fail_flag) {
                std::lock_guard<std::mutex> lock(mutex);
                seen.push_back(Seen{&sender, message.subject, fail_flag, message.outcome,
                                    std::this_thread::get_id(),
                                    clock != nullptr ? clock->elapsed().count() : -1,
                                    transport != nullptr ? transport->starts.size() : 0});
            });
    }
    std::size_t size() {
        std::lock_guard<std::mutex> lock(mutex);
        return seen.size();
    }
    /// How many emissions there were for `subject`.
    std::size_t count(const std::string& subject) {
        std::lock_guard<std::mutex> lock(mutex);
        return static_cast<std::size_t>(std::count_if(
            seen.begin(), seen.end(), [&](const Seen& one) { return one.subject == subject; }));
    }
    /// The first emission for `subject`; throws when there was none.
    const Seen& of(const std::string& subject) {
        std::lock_guard<std::mutex> lock(mutex);
        for (const auto& one : seen) {
            if (one.subject == subject) return one;
        }
        throw std::out_of_range("no emission for " + subject);
    }
    /// The subjects in emission order.
    std::vector<std::string> order() {
        std::lock_guard<std::mutex> lock(mutex);
        std::vector<std::string> subjects;
        for (const auto& one : seen) subjects.push_back(one.subject);
        return subjects;
    }
};

/// Settings for a scripted backend: no jitter, so waits are exact in fake time.
Settings scripted_settings(std::size_t in_flight = 8) {
    Settings settings;
    settings.api_key = api_key;
    settings.max_in_flight = in_flight;
    settings.retry.jitter = 0;
    settings.retry.initial_backoff = 100ms;
    return settings;
}

BackendOptions quietly(bool fail_silently = true) {
    BackendOptions options;
    options.fail_silently = fail_silently;
    return options;
}

/// A backend over a scripted transport whose script is keyed by each payload's subject, in fake
/// time.
struct Scripted {
    test_support::FakeClock clock;
    std::shared_ptr<test_support::ScriptedTransport> transport;
    std::unique_ptr<SendgridBackend> backend;

    Scripted(std::map<std::string, std::vector<Step>> by_subject, const Settings& settings,
             BackendOptions options = {}) {
        transport = std::make_shared<test_support::ScriptedTransport>(clock, std::move(by_subject));
        transport->key_of = &subject_of;
        options.transport = transport;
        options.clock = &clock;
        backend = std::make_unique<SendgridBackend>(settings, options);
    }
    Scripted(std::map<std::string, std::vector<Step>> by_subject, bool fail_silently,
             std::size_t in_flight = 8)
        : Scripted(std::move(by_subject), scripted_settings(in_flight), quietly(fail_silently)) {}

    /// How many tries of `subject` the transport was handed.
    std::size_t starts_of(const std::string& subject) const {
        return static_cast<std::size_t>(
            std::count_if(transport->starts.begin(), transport->starts.end(),
                          [&](const std::pair<std::string, long long>& start) {
                              return start.first == subject;
                          }));
    }
};

/// Collects what on_handler_error receives, as "subject: what".
struct HandlerErrors {
    std::vector<std::string> reported;
    sendgrid_backend::HandlerErrorHandler handler() {
        return [this](const EmailMessage& message, std::exception_ptr error) {
            reported.push_back(message.subject + ": " + what_of(error));
        };
    }
};

/// The pre-send hook of the tables: cancels "cancel" (CancelSend) and "hook bug" (any other
/// exception cancels too).
void cancelling_hook(const SendgridBackend&, EmailMessage& message) {
    if (message.subject == "cancel") throw sendgrid_backend::CancelSend("unsubscribed");
    if (message.subject == "hook bug") throw std::runtime_error("hook bug");
}

// --- one message's fate, in each position of a batch ---

/// One way a message can end, played by the message at some position of a three-message batch
/// whose other messages are accepted, with everything its outcome must say.
struct MessageCase {
    std::string subject;      ///< names the case: the hook's action and the script entry
    std::vector<Step> steps;  ///< the transport's answers, one per try (the last repeats)
    SendStatus status;
    int http_status;
    TransportError transport_error;
    int attempts;
    int tries;
    long long final_ms;  ///< fake time at which the outcome is final
    std::vector<sendgrid_backend::EarlierTry> earlier_tries;
    std::string message_id;
    std::vector<std::pair<std::string, std::string>> errors;  ///< SendGrid's (message, field)
    std::string failure_reason;
    std::string described_as;  ///< SendError's words before the reason (none: it says the status)
};

const std::string invalid_address_reason =
    "to[0]: 'not-an-address' is not a valid email address (has no '@')";

std::vector<MessageCase> message_cases() {
    using test_support::accepted;
    using test_support::answered;
    using test_support::rate_limited;
    using test_support::refused;
    using test_support::timed_out;
    using Status = SendStatus;
    using Error = TransportError;
    const sendgrid_backend::EarlierTry a_429{429, Error::none};
    const sendgrid_backend::EarlierTry no_connection{0, Error::connection_failed};
    const auto bad_from =
        answered(400, {}, "{\"errors\":[{\"message\":\"bad from\",\"field\":\"from.email\"}]}");
    sendgrid_backend::HttpResponse cut_short = accepted("cut");
    cut_short.error = Error::receive_failed;
    cut_short.error_message = "connection reset";
    // The others in the batch are accepted at 100, 200 and 300 ms: no case ends at those times.
    // clang-format off
    return {
        // subject, steps (one per try, the last repeats),
        //   status, HTTP status, transport error, attempts, tries, final ms,
        //   earlier tries, message id, errors, failure reason, SendError's words before it
        {"invalid", {},
           Status::invalid, 0, Error::none, 0, 0, 0,
           {}, "", {}, invalid_address_reason, "invalid: "},
        {"cancel", {},
           Status::cancelled, 0, Error::none, 0, 0, 0,
           {}, "", {}, "cancelled: unsubscribed", ""},
        {"hook bug", {},
           Status::cancelled, 0, Error::none, 0, 0, 0,
           {}, "", {}, "cancelled: a sendgrid_pre_send handler threw: hook bug", ""},
        {"rejected", {Step{50ms, bad_from}},
           Status::rejected, 400, Error::none, 1, 1, 50,
           {}, "", {{"bad from", "from.email"}}, "HTTP 400; bad from (from.email)", "rejected: "},
        {"server error", {Step{60ms, answered(503)}},
           Status::rejected, 503, Error::none, 1, 1, 60,
           {}, "", {}, "HTTP 503", "rejected: "},
        // 10 ms, Retry-After 1 s, 10 ms, 1 s, 10 ms: max_tries (3) used up.
        {"rate limited", {Step{10ms, rate_limited("1")}},
           Status::rejected, 429, Error::none, 3, 3, 2030,
           {a_429, a_429}, "", {}, "HTTP 429 (after 3 tries)", "rejected: "},
        // 5 ms, backoff 100 ms, 5 ms, 200 ms, 5 ms: never on the wire.
        {"refused", {Step{5ms, refused()}},
           Status::transport_failed, 0, Error::connection_failed, 0, 3, 315,
           {no_connection, no_connection}, "", {},
           "not sent: connection_failed: Connection refused (after 3 tries)",
           "transport_failed: "},
        {"timed out", {Step{2000ms, timed_out()}},
           Status::unknown, 0, Error::timeout, 1, 1, 2000,
           {}, "", {},
           "outcome unknown: the request was sent but no answer arrived (timeout: Operation "
           "timed out); SendGrid may have accepted it", ""},
        {"retried", {Step{10ms, rate_limited("1")}, Step{10ms, accepted("retried-id")}},
           Status::accepted, 202, Error::none, 2, 2, 1020,
           {a_429}, "retried-id", {}, "", ""},
        // A 202 head whose body was cut short: SendGrid has the mail.
        {"cut short", {Step{70ms, cut_short}},
           Status::accepted, 202, Error::receive_failed, 1, 1, 70,
           {}, "cut", {}, "", ""},
    };
    // clang-format on
}

void check_outcome(const SendOutcome& outcome, const MessageCase& expected) {
    CHECK(outcome.status == expected.status);
    CHECK(outcome.http_status == expected.http_status);
    CHECK(outcome.transport_error == expected.transport_error);
    CHECK(outcome.attempts == expected.attempts);
    CHECK(outcome.tries == expected.tries);
    CHECK(outcome.message_id == expected.message_id);
    CHECK(outcome.failure_reason == expected.failure_reason);
    CHECK(outcome.duration == std::chrono::milliseconds(expected.final_ms));
    REQUIRE(outcome.earlier_tries.size() == expected.earlier_tries.size());
    for (std::size_t k = 0; k < expected.earlier_tries.size(); ++k) {
        CHECK(outcome.earlier_tries[k].http_status == expected.earlier_tries[k].http_status);
        CHECK(outcome.earlier_tries[k].transport_error ==
              expected.earlier_tries[k].transport_error);
    }
    REQUIRE(outcome.errors.size() == expected.errors.size());
    for (std::size_t k = 0; k < expected.errors.size(); ++k) {
        CHECK(outcome.errors[k].message == expected.errors[k].first);
        CHECK(outcome.errors[k].field == expected.errors[k].second);
    }
}

/// A message the transport accepts on its first try, `at_ms` after it was started.
MessageCase accepted_case(const std::string& subject, long long at_ms) {
    MessageCase ok;
    ok.subject = subject;
    ok.status = SendStatus::accepted;
    ok.http_status = 202;
    ok.transport_error = TransportError::none;
    ok.attempts = 1;
    ok.tries = 1;
    ok.final_ms = at_ms;
    ok.message_id = subject + "-id";
    return ok;
}

/// A batch of three: `fate` at `position`, "ok<i>" (accepted at (i+1) * 100 ms) elsewhere.
void run_message_case(const MessageCase& fate, std::size_t position, bool fail_silently,
                      bool throwing_handler) {
    INFO(fate.subject << " at position " << position << ", fail_silently " << fail_silently
                      << ", throwing handler " << throwing_handler);
    std::vector<MessageCase> expected;
    std::map<std::string, std::vector<Step>> script;
    for (std::size_t i = 0; i < 3; ++i) {
        if (i == position) {
            expected.push_back(fate);
            if (!fate.steps.empty()) script[fate.subject] = fate.steps;
            continue;
        }
        const std::string name = "ok" + std::to_string(i);
        const long long at = 100 * static_cast<long long>(i + 1);
        script[name] = {Step{std::chrono::milliseconds(at), test_support::accepted(name + "-id")}};
        expected.push_back(accepted_case(name, at));
    }
    Settings settings = scripted_settings();
    settings.retry.max_tries = 3;
    HandlerErrors handler_errors;
    BackendOptions options = quietly(fail_silently);
    options.on_handler_error = handler_errors.handler();
    Scripted scripted(script, settings, options);
    sendgrid_backend::ScopedConnection hook =
        sendgrid_backend::sendgrid_pre_send.connect(&cancelling_hook);
    sendgrid_backend::ScopedConnection thrower;
    if (throwing_handler) {
        thrower = sendgrid_backend::sendgrid_email_sent.connect(
            [](const SendgridBackend&, const EmailMessage&, bool) {
                throw std::runtime_error("metrics down");
            });
    }
    Emissions emissions(&scripted.clock, scripted.transport.get());
    std::vector<EmailMessage> batch;
    for (const auto& one : expected) batch.push_back(make_message(one.subject));
    if (fate.subject == "invalid") batch[position].to = {"not-an-address"};

    const bool fails = fate.status != SendStatus::accepted;
    try {
        const std::size_t sent = scripted.backend->send_messages(batch);
        CHECK((fail_silently || !fails));
        CHECK(sent == (fails ? 2U : 3U));
    } catch (const BrokenTransport& error) {
        FAIL_CHECK("BrokenTransport from a transport that kept its contract: " << error.what());
    } catch (const SendError& error) {
        CHECK(fails);
        CHECK_FALSE(fail_silently);
        CHECK(error.id() == "sendgrid_backend.send_error");
        REQUIRE(error.failures().size() == 1);
        const SendError::Failure& failure = error.failures()[0];
        CHECK(failure.index == position);
        CHECK(failure.status == fate.status);
        CHECK(failure.http_status == fate.http_status);
        CHECK(failure.reason == fate.failure_reason);
        CHECK(std::string(error.what()) ==
              "[sendgrid_backend.send_error] 1 of 3 messages was not sent: [" +
                  std::to_string(position) + "] " + fate.described_as + fate.failure_reason);
    }

    // Each message once, on this thread, from this backend, with its final outcome, at the
    // moment it became final: so in order of those moments, refused ones before any send.
    REQUIRE(emissions.size() == 3);
    long long previous_ms = 0;
    for (const auto& seen : emissions.seen) {
        CHECK(seen.at_ms >= previous_ms);
        previous_ms = seen.at_ms;
    }
    for (std::size_t i = 0; i < 3; ++i) {
        const MessageCase& want = expected[i];
        INFO("message " << i << ": " << want.subject);
        CHECK(emissions.count(want.subject) == 1);
        const Emissions::Seen& seen = emissions.of(want.subject);
        CHECK(seen.sender == scripted.backend.get());
        CHECK(seen.thread == std::this_thread::get_id());
        CHECK(seen.fail_flag == (want.status != SendStatus::accepted));
        CHECK(seen.at_ms == want.final_ms);
        if (want.tries == 0) CHECK(seen.starts_before == 0);
        check_outcome(seen.outcome, want);
        check_outcome(batch[i].outcome, want);
        // Handed to the transport once per try: nothing started twice unless retried.
        CHECK(scripted.starts_of(want.subject) == static_cast<std::size_t>(want.tries));
    }
    std::size_t tries = 0;
    for (const auto& want : expected) tries += static_cast<std::size_t>(want.tries);
    CHECK(scripted.transport->starts.size() == tries);

    // A throwing handler changes none of the above; each of its errors is reported once.
    if (throwing_handler) {
        std::multiset<std::string> reported(handler_errors.reported.begin(),
                                            handler_errors.reported.end());
        std::multiset<std::string> wanted;
        for (const auto& want : expected) wanted.insert(want.subject + ": metrics down");
        CHECK(reported == wanted);
    } else {
        CHECK(handler_errors.reported.empty());
    }
}

// --- a transport that breaks, in each position of a batch ---

enum class Break {
    send_throws,          ///< Transport::send throws (one request at a time)
    open_throws,          ///< open_batch throws
    start_throws,         ///< TransportBatch::start throws
    wait_throws,          ///< TransportBatch::wait_any throws
    never_answers,        ///< one request is never answered
    answers_twice,        ///< the first answer comes twice
    answers_unknown_tag,  ///< an answer for a request it was not given
};

struct TransportCase {
    const char* name;
    Break fault;
    std::size_t in_flight;
    bool positional;      ///< the fault hits the request at a position; else run once
    std::string problem;  ///< in BrokenTransport's text
    std::string thrown;   ///< what the transport threw; empty: it broke its contract silently
};

const std::vector<TransportCase>& transport_cases() {
    static const std::vector<TransportCase> cases = {
        {"send throws", Break::send_throws, 1, true, "it threw from wait_any: send exploded",
         "send exploded"},
        {"open_batch throws", Break::open_throws, 3, false,
         "it threw from open_batch: open_batch exploded", "open_batch exploded"},
        {"start throws", Break::start_throws, 3, true, "it threw from start: start exploded",
         "start exploded"},
        {"wait_any throws", Break::wait_throws, 3, true,
         "it threw from wait_any: wait_any exploded", "wait_any exploded"},
        {"never answers", Break::never_answers, 3, true, "it did not answer a request", ""},
        {"answers twice", Break::answers_twice, 3, true,
         "it answered a request it was not given, or one twice", ""},
        {"answers a request it was not given", Break::answers_unknown_tag, 3, false,
         "it answered a request it was not given, or one twice", ""},
    };
    return cases;
}

/// What message `i` ends as when `fault` hits position `p`.
SendStatus status_after(Break fault, std::size_t p, std::size_t i) {
    switch (fault) {
        case Break::send_throws:
            return i < p ? SendStatus::accepted
                         : (i == p ? SendStatus::unknown : SendStatus::transport_failed);
        case Break::open_throws:
            return SendStatus::transport_failed;
        case Break::start_throws:
            return i <= p ? SendStatus::unknown : SendStatus::transport_failed;
        case Break::wait_throws:
            return i < p ? SendStatus::accepted : SendStatus::unknown;
        case Break::never_answers:
            return i == p ? SendStatus::unknown : SendStatus::accepted;
        case Break::answers_twice:
        case Break::answers_unknown_tag:
            return SendStatus::accepted;
    }
    return SendStatus::not_attempted;
}

/// How many times the transport itself was handed message `i` (a throwing send or start never
/// got it, though delivery counts the try).
std::size_t starts_after(Break fault, std::size_t p, std::size_t i) {
    switch (fault) {
        case Break::send_throws:
        case Break::start_throws:
            return i < p ? 1 : 0;
        case Break::open_throws:
            return 0;
        default:
            return 1;
    }
}

void run_transport_case(const TransportCase& fault, std::size_t position, bool fail_silently) {
    INFO(fault.name << " at position " << position << ", fail_silently " << fail_silently);
    // m<i> answers after i+1 ms, so answers come in batch order; for answers_twice the one at
    // `position` answers first, and its answer is the one repeated.
    std::map<std::string, std::vector<Step>> script;
    std::vector<long long> latency_ms(3);
    std::vector<long long> answered_at_ms(3);  // one at a time, each waits for those before
    for (std::size_t i = 0; i < 3; ++i) {
        const std::string name = "m" + std::to_string(i);
        latency_ms[i] = static_cast<long long>(i) + 1;
        if (fault.fault == Break::answers_twice) {
            latency_ms[i] = i == position ? 1 : static_cast<long long>(i) + 2;
        }
        answered_at_ms[i] =
            latency_ms[i] + (fault.in_flight == 1 && i > 0 ? answered_at_ms[i - 1] : 0);
        script[name] = {
            Step{std::chrono::milliseconds(latency_ms[i]), test_support::accepted(name + "-id")}};
    }
    Scripted scripted(script, fail_silently, fault.in_flight);
    test_support::ScriptedTransport& transport = *scripted.transport;
    switch (fault.fault) {
        case Break::send_throws:
            transport.throw_on_send = position;
            break;
        case Break::open_throws:
            transport.throw_on_open = true;
            break;
        case Break::start_throws:
            transport.throw_on_start = position;
            break;
        case Break::wait_throws:
            transport.throw_on_wait = static_cast<int>(position);
            break;
        case Break::never_answers:
            transport.never_answer = "m" + std::to_string(position);
            break;
        case Break::answers_twice:
            transport.answer_twice = true;
            break;
        case Break::answers_unknown_tag:
            transport.answer_unknown_tag = true;
            break;
    }
    Emissions emissions(&scripted.clock, &transport);
    auto batch = messages_with_subjects({"m0", "m1", "m2"});

    std::vector<std::size_t> failed;
    for (std::size_t i = 0; i < 3; ++i) {
        if (status_after(fault.fault, position, i) != SendStatus::accepted) failed.push_back(i);
    }
    try {
        scripted.backend->send_messages(batch);
        FAIL_CHECK("no BrokenTransport");
    } catch (const BrokenTransport& error) {
        CHECK(error.id() == "sendgrid_backend.broken_transport");
        const std::string what = error.what();
        CHECK(what.rfind("[sendgrid_backend.broken_transport] the transport broke (" +
                             fault.problem + "); " + std::to_string(failed.size()) +
                             " of 3 messages",
                         0) == 0);
        REQUIRE(error.failures().size() == failed.size());
        for (std::size_t k = 0; k < failed.size(); ++k) {
            const SendError::Failure& failure = error.failures()[k];
            CHECK(failure.index == failed[k]);  // in batch order
            CHECK(failure.status == status_after(fault.fault, position, failed[k]));
            CHECK(failure.http_status == 0);
            CHECK(failure.reason == batch[failed[k]].outcome.failure_reason);
        }
        if (fault.thrown.empty()) {
            CHECK(error.cause() == nullptr);
        } else {
            REQUIRE(error.cause() != nullptr);
            CHECK(what_of(error.cause()) == fault.thrown);
        }
    } catch (const std::exception& error) {
        FAIL_CHECK("not a BrokenTransport: " << error.what());
    }

    // Each message once, on this thread: those answered before the break as their answers came,
    // then the others in batch order.
    REQUIRE(emissions.size() == 3);
    std::vector<std::size_t> want_order{0, 1, 2};
    std::stable_sort(want_order.begin(), want_order.end(), [&](std::size_t a, std::size_t b) {
        const bool a_failed = status_after(fault.fault, position, a) != SendStatus::accepted;
        const bool b_failed = status_after(fault.fault, position, b) != SendStatus::accepted;
        if (a_failed != b_failed) return b_failed;
        return !a_failed && latency_ms[a] < latency_ms[b];
    });
    std::vector<std::string> want_subjects;
    for (std::size_t i : want_order) want_subjects.push_back("m" + std::to_string(i));
    CHECK(emissions.order() == want_subjects);
    for (std::size_t i = 0; i < 3; ++i) {
        const std::string name = "m" + std::to_string(i);
        const SendStatus status = status_after(fault.fault, position, i);
        INFO(name << " ends " << sendgrid_backend::to_string(status));
        CHECK(emissions.count(name) == 1);
        const Emissions::Seen& seen = emissions.of(name);
        CHECK(seen.thread == std::this_thread::get_id());
        CHECK(seen.sender == scripted.backend.get());
        CHECK(seen.fail_flag == (status != SendStatus::accepted));
        CHECK(seen.outcome.failure_reason == batch[i].outcome.failure_reason);
        CHECK(scripted.starts_of(name) == starts_after(fault.fault, position, i));

        const SendOutcome& outcome = batch[i].outcome;
        CHECK(outcome.status == status);
        if (status == SendStatus::accepted) {
            CHECK(seen.at_ms == answered_at_ms[i]);
            CHECK(outcome.http_status == 202);
            CHECK(outcome.message_id == name + "-id");
            CHECK(outcome.attempts == 1);
            CHECK(outcome.tries == 1);
            CHECK(outcome.failure_reason.empty());
            continue;
        }
        CHECK(outcome.http_status == 0);
        CHECK(outcome.message_id.empty());
        CHECK(outcome.attempts == 0);  // no answer said it went on the wire
        CHECK(outcome.transport_error == TransportError::exception);
        if (fault.fault == Break::never_answers) {
            CHECK(seen.at_ms == 40'000);  // the settings' timeout (30 s) and the 10 s margin
            CHECK(outcome.tries == 1);
            CHECK(outcome.failure_reason ==
                  "outcome unknown: the transport did not answer within 40000 ms; it may have "
                  "sent the request");
        } else if (status == SendStatus::unknown) {
            CHECK(outcome.tries == 1);
            CHECK(outcome.failure_reason ==
                  "outcome unknown: the transport threw while the request was in flight (" +
                      fault.thrown + "); it may have sent the request");
        } else {
            CHECK(outcome.tries == 0);
            CHECK(outcome.failure_reason ==
                  "not sent: the transport threw earlier in this batch (" + fault.thrown + ")");
        }
    }
}

}  // namespace

TEST_CASE("each fate of a message, in each position, with and without fail_silently",
          "[backend][contract]") {
    for (const MessageCase& fate : message_cases()) {
        for (std::size_t position = 0; position < 3; ++position) {
            for (bool fail_silently : {false, true}) {
                for (bool throwing_handler : {false, true}) {
                    run_message_case(fate, position, fail_silently, throwing_handler);
                }
            }
        }
    }
}

TEST_CASE("a transport that throws or breaks its contract, in each position: BrokenTransport",
          "[backend][contract]") {
    for (const TransportCase& fault : transport_cases()) {
        for (std::size_t position = 0; position < (fault.positional ? 3U : 1U); ++position) {
            for (bool fail_silently : {false, true}) {
                run_transport_case(fault, position, fail_silently);
            }
        }
    }
}

TEST_CASE("an exception that is not the transport's propagates once every message was emitted",
          "[backend][contract]") {
    // The echo stream fails: the error is neither a message's nor the transport's.
    struct FailingBuffer : std::streambuf {
        std::streamsize xsputn(const char*, std::streamsize) override { return 0; }
        int_type overflow(int_type) override { return traits_type::eof(); }
    };
    FailingBuffer buffer;
    std::ostream stream(&buffer);
    stream.exceptions(std::ios::badbit);
    Settings settings = scripted_settings();
    settings.echo_to_stdout = true;
    BackendOptions options = quietly();
    options.stream = &stream;
    Scripted scripted({{"a", {Step{1ms, test_support::accepted()}}}}, settings, options);
    Emissions emissions(&scripted.clock, scripted.transport.get());
    auto batch = messages_with_subjects({"a", "bad"});
    batch[1].to = {"not-an-address"};
    CHECK_THROWS_AS(scripted.backend->send_messages(batch), std::ios_base::failure);
    CHECK(emissions.order() == std::vector<std::string>{"bad", "a"});
    CHECK(batch[1].outcome.status == SendStatus::invalid);
    CHECK(batch[0].outcome.status == SendStatus::transport_failed);
    CHECK(batch[0].outcome.failure_reason.rfind("not sent: interrupted by an error (", 0) == 0);
    CHECK(emissions.of("a").fail_flag);
    CHECK(scripted.transport->starts.empty());
}

// --- moved from test_mail.cpp: they need no HTTP ---

TEST_CASE("fail_silently=false: every message attempted and emitted, then one SendError",
          "[backend][contract]") {
    Settings settings = scripted_settings(1);
    settings.retry.max_tries = 1;
    Scripted scripted({{"first", {Step{1ms, test_support::answered(500)}}},
                       {"second", {Step{1ms, test_support::accepted()}}}},
                      settings);
    Emissions emissions;
    std::vector<EmailMessage> batch{make_message("first"), make_message("second"),
                                    make_message("third", "not-an-address")};
    try {
        scripted.backend->send_messages(batch);
        FAIL("no SendError");
    } catch (const SendError& error) {
        CHECK(error.id() == "sendgrid_backend.send_error");
        REQUIRE(error.failures().size() == 2);  // in batch order
        CHECK(error.failures()[0].index == 0);
        CHECK(error.failures()[0].status == SendStatus::rejected);
        CHECK(error.failures()[0].http_status == 500);
        CHECK(error.failures()[1].index == 2);
        CHECK(error.failures()[1].status == SendStatus::invalid);
        CHECK(error.failures()[1].reason.rfind("to[0]: ", 0) == 0);
        CHECK(std::string(error.what()).find("2 of 3 messages were not sent") != std::string::npos);
    }
    // Emitted as each outcome became final: the invalid one before anything was sent.
    REQUIRE(emissions.size() == 3);
    CHECK(emissions.seen[0].subject == "third");
    CHECK(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.status == SendStatus::invalid);
    CHECK(emissions.seen[1].subject == "first");
    CHECK(emissions.seen[1].fail_flag);
    CHECK(emissions.seen[2].subject == "second");
    CHECK_FALSE(emissions.seen[2].fail_flag);
    CHECK(batch[1].outcome.accepted());
    CHECK(scripted.starts_of("first") == 1);
    CHECK(scripted.starts_of("second") == 1);
    CHECK(scripted.starts_of("third") == 0);
}

TEST_CASE("fail_silently=true: no exception, the count says what was accepted",
          "[backend][contract]") {
    Scripted scripted({{"ok", {Step{1ms, test_support::accepted()}}}}, true);
    Emissions emissions;
    std::vector<EmailMessage> batch{make_message("ok"), make_message("bad", "bad")};
    CHECK(scripted.backend->send_messages(batch) == 1);
    CHECK(emissions.size() == 2);
    CHECK(batch[1].outcome.failure_reason.rfind("to[0]: ", 0) == 0);
}

TEST_CASE("sendgrid_pre_send can modify and cancel messages", "[backend][pre_send]") {
    Scripted scripted({{"[edited] keep", {Step{1ms, test_support::accepted()}}}}, true);
    Emissions emissions;
    sendgrid_backend::ScopedConnection hook = sendgrid_backend::sendgrid_pre_send.connect(
        [](const SendgridBackend&, EmailMessage& message) {
            if (message.subject == "cancel me") throw sendgrid_backend::CancelSend("unsubscribed");
            if (message.subject == "broken hook") throw std::runtime_error("hook bug");
            message.subject = "[edited] " + message.subject;
            message.categories.push_back("edited");
        });
    std::vector<EmailMessage> batch{make_message("keep"), make_message("cancel me"),
                                    make_message("broken hook")};
    CHECK(scripted.backend->send_messages(batch) == 1);

    // What the transport was handed: the edited message, and nothing else.
    REQUIRE(scripted.transport->bodies.size() == 1);
    const auto sent = nlohmann::json::parse(scripted.transport->bodies[0]);
    CHECK(sent["subject"] == "[edited] keep");
    CHECK(sent["categories"] == nlohmann::json::array({"edited"}));

    // Cancelled messages are final before anything is sent: emitted first.
    REQUIRE(emissions.size() == 3);
    CHECK(emissions.seen[0].subject == "cancel me");
    CHECK(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.status == SendStatus::cancelled);
    CHECK(emissions.seen[0].outcome.failure_reason == "cancelled: unsubscribed");
    CHECK(emissions.seen[1].subject == "broken hook");
    CHECK(emissions.seen[1].outcome.status == SendStatus::cancelled);
    CHECK(emissions.seen[1].outcome.failure_reason.find("hook bug") != std::string::npos);
    CHECK(emissions.seen[2].subject == "[edited] keep");
    CHECK_FALSE(emissions.seen[2].fail_flag);
}

TEST_CASE("SendError says each failure's status once, and the reason on its own still says it",
          "[backend][pre_send]") {
    Settings settings = scripted_settings(1);
    settings.retry.max_tries = 1;
    // The answer FakeSendgridServer gives for an injected 400.
    const auto bad_request = test_support::answered(
        400, {}, "{\"errors\":[{\"message\":\"Bad Request (injected)\",\"field\":null}]}");
    Scripted scripted(
        {{"rejected", {Step{1ms, bad_request}}}, {"sent", {Step{1ms, test_support::accepted()}}}},
        settings);
    sendgrid_backend::ScopedConnection hook = sendgrid_backend::sendgrid_pre_send.connect(
        [](const SendgridBackend&, EmailMessage& message) {
            if (message.subject == "opted out") {
                throw sendgrid_backend::CancelSend("user opted out");
            }
            if (message.subject == "broken hook") throw std::runtime_error("hook bug");
        });
    std::vector<EmailMessage> batch{make_message("opted out"), make_message("broken hook"),
                                    make_message("rejected"), make_message("sent")};
    try {
        scripted.backend->send_messages(batch);
        FAIL("no SendError");
    } catch (const SendError& error) {
        CHECK(std::string(error.what()) ==
              "[sendgrid_backend.send_error] 3 of 4 messages were not sent: [0] cancelled: user "
              "opted out; [1] cancelled: a sendgrid_pre_send handler threw: hook bug; [2] "
              "rejected: HTTP 400; Bad Request (injected)");
    }
    // What a handler reads names the status itself.
    CHECK(batch[0].outcome.failure_reason == "cancelled: user opted out");
    CHECK(batch[2].outcome.failure_reason == "HTTP 400; Bad Request (injected)");
    CHECK(batch[3].outcome.accepted());
}

TEST_CASE("SendError's text for each kind of failure", "[backend]") {
    using Failure = SendError::Failure;
    const auto text = [](Failure failure) {
        return std::string(SendError({std::move(failure)}, 1).what());
    };
    const std::string head = "[sendgrid_backend.send_error] 1 of 1 message was not sent: [0] ";
    CHECK(text({0, SendStatus::cancelled, 0, "cancelled: user opted out"}) ==
          head + "cancelled: user opted out");
    CHECK(text({0, SendStatus::unknown, 0, "outcome unknown: no answer"}) ==
          head + "outcome unknown: no answer");
    CHECK(text({0, SendStatus::rejected, 429, "HTTP 429; too many requests"}) ==
          head + "rejected: HTTP 429; too many requests");
    // A reason that does not say the status gets it in front, the HTTP status too.
    CHECK(text({0, SendStatus::cancelled, 0, "user opted out"}) ==
          head + "cancelled: user opted out");
    CHECK(text({0, SendStatus::rejected, 400, "bad from"}) == head + "rejected 400: bad from");
    CHECK(text({0, SendStatus::rejected, 400, "HTTP 4000"}) == head + "rejected 400: HTTP 4000");
    CHECK(text({0, SendStatus::invalid, 0, "to[0]: no @"}) == head + "invalid: to[0]: no @");
    CHECK(text({0, SendStatus::transport_failed, 0, "not sent: refused"}) ==
          head + "transport_failed: not sent: refused");
    CHECK(text({0, SendStatus::cancelled, 0, "uncancelled: x"}) ==
          head + "cancelled: uncancelled: x");
    CHECK(std::string(
              SendError({{1, SendStatus::invalid, 0, "a"}, {2, SendStatus::invalid, 0, "b"}}, 3)
                  .what()) ==
          "[sendgrid_backend.send_error] 2 of 3 messages were not sent: [1] invalid: a; [2] "
          "invalid: b");
}

TEST_CASE("a throwing handler neither fails an accepted send nor stops the batch",
          "[backend][contract]") {
    std::vector<std::string> reported;
    BackendOptions options;
    options.on_handler_error = [&](const EmailMessage& message, std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            reported.push_back(message.subject + ": " + e.what());
        }
    };
    Scripted scripted({{"a", {Step{2ms, test_support::accepted()}}},
                       {"b", {Step{1ms, test_support::accepted()}}}},
                      scripted_settings(), options);
    sendgrid_backend::ScopedConnection thrower = sendgrid_backend::sendgrid_email_sent.connect(
        [](const SendgridBackend&, const EmailMessage&, bool) {
            throw std::runtime_error("metrics down");
        });
    Emissions emissions;  // connected after the thrower: still called
    std::vector<EmailMessage> batch{make_message("a"), make_message("b")};
    CHECK(scripted.backend->send_messages(batch) == 2);  // no SendError: both accepted
    CHECK(emissions.size() == 2);
    // Emitted in the order the answers came: compare without order.
    CHECK(std::multiset<std::string>(reported.begin(), reported.end()) ==
          std::multiset<std::string>{"a: metrics down", "b: metrics down"});
}

TEST_CASE("echo to a stream writes each message, never the key", "[backend]") {
    Settings settings = scripted_settings();
    settings.echo_to_stdout = true;
    std::ostringstream stream;
    BackendOptions options;
    options.stream = &stream;
    Scripted scripted({{"Echoed", {Step{1ms, test_support::accepted()}}}}, settings, options);
    EmailMessage message = make_message("Echoed");
    message.attach("a.txt", "hello");
    CHECK(scripted.backend->send_message(message));
    const std::string echoed = stream.str();
    CHECK(echoed.find("Subject: Echoed\n") != std::string::npos);
    CHECK(echoed.find("To: jane@example.com\n") != std::string::npos);
    CHECK(echoed.find("Body of Echoed") != std::string::npos);
    CHECK(echoed.find("[attachment a.txt, 5 bytes]") != std::string::npos);
    CHECK(echoed.find(std::string(79, '-')) != std::string::npos);
    CHECK(echoed.find(api_key) == std::string::npos);
}

TEST_CASE("a missing API key: the library's text names both ways a C++ program has",
          "[backend][settings]") {
    Settings settings;
    settings.api_key = " ";
    CHECK_THROWS_WITH(SendgridBackend(settings),
                      "[sendgrid_backend.improperly_configured] Settings::api_key: is not set; set "
                      "SENDGRID_API_KEY or pass BackendOptions::api_key");
}

TEST_CASE("a missing API key is ImproperlyConfigured; an explicit key beats the settings",
          "[backend]") {
    Settings settings;
    CHECK_THROWS_AS(SendgridBackend(settings), sendgrid_backend::ImproperlyConfigured);
    settings.api_key = "   ";
    CHECK_THROWS_AS(SendgridBackend(settings), sendgrid_backend::ImproperlyConfigured);
    try {
        SendgridBackend backend(settings);
    } catch (const sendgrid_backend::ImproperlyConfigured& e) {
        CHECK(e.setting() == "Settings::api_key");
    }

    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    BackendOptions options;
    options.api_key = "SG.explicit";
    options.transport = outbox;
    settings.api_key = "SG.from-settings";
    SendgridBackend backend(settings, options);
    EmailMessage message = make_message("keyed");
    CHECK(backend.send_message(message));
    CHECK(sendgrid_backend::find_header(outbox->requests().at(0).headers, "Authorization") ==
          "Bearer SG.explicit");
    CHECK(message.outcome.message_id == "outbox-0");
}

TEST_CASE("the host URL selects the endpoint (e.g. the EU region)", "[backend]") {
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    CHECK(SendgridBackend(settings, options).send_url() == "https://api.sendgrid.com/v3/mail/send");
    settings.host_url = "https://api.eu.sendgrid.com/";
    CHECK(SendgridBackend(settings, options).send_url() ==
          "https://api.eu.sendgrid.com/v3/mail/send");
    settings.host_url = "api.sendgrid.com";
    CHECK_THROWS_AS(SendgridBackend(settings, options), sendgrid_backend::ImproperlyConfigured);
}

TEST_CASE("the outbox transport keeps every payload, like Django's mail.outbox", "[backend]") {
    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = outbox;
    SendgridBackend backend(settings, options);
    std::vector<EmailMessage> batch{make_message("one"), make_message("two")};
    CHECK(backend.send_messages(batch) == 2);
    const auto sent = outbox->outbox();
    REQUIRE(sent.size() == 2);
    CHECK(sent[0]["subject"] == "one");
    CHECK(sent[1]["subject"] == "two");
    outbox->clear();
    CHECK(outbox->size() == 0);
}

TEST_CASE("each message is emitted as soon as its outcome is final, on the caller's thread",
          "[backend][contract]") {
    Scripted scripted(
        {{"slow", {Step{3000ms, test_support::accepted("s")}}},
         {"limited",
          {Step{10ms, test_support::rate_limited("1")}, Step{10ms, test_support::accepted("l")}}},
         {"quick", {Step{5ms, test_support::accepted("q")}}}},
        true);
    Emissions emissions;
    std::map<std::string, long long> emitted_at_ms;
    sendgrid_backend::ScopedConnection timing = sendgrid_backend::sendgrid_email_sent.connect(
        [&](const SendgridBackend&, const EmailMessage& message, bool) {
            emitted_at_ms[message.subject] = scripted.clock.elapsed().count();
        });
    auto batch = messages_with_subjects({"slow", "limited", "quick", "bad"});
    batch[3].to = {"not-an-address"};
    CHECK(scripted.backend->send_messages(batch) == 3);
    REQUIRE(emissions.size() == 4);
    std::vector<std::string> order;
    for (const auto& seen : emissions.seen) {
        order.push_back(seen.subject);
        CHECK(seen.thread == std::this_thread::get_id());
    }
    CHECK(order == std::vector<std::string>{"bad", "quick", "limited", "slow"});
    CHECK(emitted_at_ms["bad"] == 0);
    CHECK(emitted_at_ms["quick"] == 5);
    CHECK(emitted_at_ms["limited"] == 1020);
    CHECK(emitted_at_ms["slow"] == 3000);
    CHECK(batch[1].outcome.tries == 2);
}

TEST_CASE(
    "a throwing transport: one emission per message, then BrokenTransport even with "
    "fail_silently",
    "[backend][contract]") {
    const bool fail_silently = GENERATE(false, true);
    Scripted scripted({{"a", {Step{1ms, test_support::accepted()}}},
                       {"b", {Step{1ms, test_support::accepted()}}},
                       {"c", {Step{1ms, test_support::accepted()}}}},
                      fail_silently, 1);
    scripted.transport->throw_on_send = 1;
    Emissions emissions;
    auto batch = messages_with_subjects({"a", "b", "c"});
    try {
        scripted.backend->send_messages(batch);
        FAIL("no BrokenTransport");
    } catch (const sendgrid_backend::BrokenTransport& error) {
        CHECK(error.id() == "sendgrid_backend.broken_transport");
        CHECK(std::string(error.what())
                  .rfind("[sendgrid_backend.broken_transport] the transport "
                         "broke (it threw from wait_any: send exploded)",
                         0) == 0);
        REQUIRE(error.failures().size() == 2);
        CHECK(error.failures()[0].index == 1);
        CHECK(error.failures()[0].status == SendStatus::unknown);
        CHECK(error.failures()[1].index == 2);
        CHECK(error.failures()[1].status == SendStatus::transport_failed);
        REQUIRE(error.cause() != nullptr);
        CHECK_THROWS_WITH(std::rethrow_exception(error.cause()), "send exploded");
    }
    REQUIRE(emissions.size() == 3);
    std::set<std::string> subjects;
    for (const auto& seen : emissions.seen) subjects.insert(seen.subject);
    CHECK(subjects.size() == 3);
    CHECK(batch[0].outcome.accepted());
}

TEST_CASE("a transport that answers short or long still gives one emission per message",
          "[backend][contract]") {
    Scripted scripted({{"a", {Step{1ms, test_support::accepted()}}},
                       {"b", {Step{1ms, test_support::accepted()}}},
                       {"c", {Step{1ms, test_support::accepted()}}}},
                      true, 3);
    const bool short_answer = GENERATE(true, false);
    if (short_answer) {
        scripted.transport->never_answer = "b";
    } else {
        scripted.transport->answer_unknown_tag = true;
    }
    Emissions emissions;
    auto batch = messages_with_subjects({"a", "b", "c"});
    CHECK_THROWS_AS(scripted.backend->send_messages(batch), sendgrid_backend::BrokenTransport);
    CHECK(emissions.size() == 3);
    CHECK(batch[0].outcome.accepted());
    CHECK(batch[1].outcome.status == (short_answer ? SendStatus::unknown : SendStatus::accepted));
    CHECK(batch[2].outcome.accepted());
}

TEST_CASE("a plain transport exception out of send_message keeps the library's id",
          "[backend][contract]") {
    struct Exploding : sendgrid_backend::Transport {
        sendgrid_backend::HttpResponse send(const sendgrid_backend::HttpRequest&) override {
            throw std::logic_error("bug in a custom transport");
        }
    };
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = std::make_shared<Exploding>();
    SendgridBackend backend(settings, options);
    Emissions emissions;
    EmailMessage message = make_message("one");
    try {
        backend.send_message(message);
        FAIL("nothing thrown");
    } catch (const sendgrid_backend::Error& error) {
        CHECK(error.id() == "sendgrid_backend.broken_transport");
    }
    CHECK(emissions.size() == 1);
    CHECK(message.outcome.status == SendStatus::unknown);
    CHECK(message.outcome.failure_reason.find("bug in a custom transport") != std::string::npos);
}

TEST_CASE("4 threads share one backend: each emission on the thread that sent the message",
          "[backend][threading]") {
    // The outbox transport is safe to share between threads; the scripted one is not.
    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    Settings settings;
    settings.api_key = api_key;
    settings.max_in_flight = 4;
    BackendOptions options;
    options.transport = outbox;
    const SendgridBackend backend(settings, options);
    Emissions emissions;
    std::vector<std::thread> threads;
    std::atomic<std::size_t> accepted{0};
    std::vector<std::thread::id> ids(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            ids[static_cast<std::size_t>(t)] = std::this_thread::get_id();
            std::vector<EmailMessage> batch;
            for (int i = 0; i < 50; ++i) {
                batch.push_back(make_message("t" + std::to_string(t) + "-" + std::to_string(i)));
            }
            accepted += backend.send_messages(batch);
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(accepted == 200);
    REQUIRE(emissions.size() == 200);
    std::set<std::string> subjects;
    for (const auto& seen : emissions.seen) {
        subjects.insert(seen.subject);
        CHECK_FALSE(seen.fail_flag);
        const auto thread_index = static_cast<std::size_t>(seen.subject[1] - '0');
        CHECK(seen.thread == ids[thread_index]);
    }
    CHECK(subjects.size() == 200);
    CHECK(outbox->size() == 200);
}

TEST_CASE(
    "split_large_messages in a program that never includes parts.hpp is refused, saying "
    "what to include",
    "[backend][parts]") {
    // This test program includes parts.hpp nowhere, so sending in parts is not installed.
    test_support::FakeClock clock;
    BackendOptions options;
    options.transport = std::make_shared<test_support::ScriptedTransport>(
        clock, std::map<std::string, std::vector<Step>>{});
    Settings settings;
    settings.api_key = "SG.test-key";
    settings.split_large_messages = true;
    CHECK_THROWS_WITH(SendgridBackend(settings, options),
                      Catch::Contains("Settings::split_large_messages") &&
                          Catch::Contains("<sendgrid_backend/parts.hpp>"));
    settings.split_large_messages = false;
    CHECK_NOTHROW(SendgridBackend(settings, options));
}

}  // namespace backend_contract
