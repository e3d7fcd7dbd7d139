// BackgroundSender: submit returns at once; every accepted message gets its final outcome and
// its one emission, on a worker thread; the queue bounds; drain and the destructor lose nothing.
#include <sendgrid_backend/background.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/outbox.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;

namespace {

sg::EmailMessage mail(int i, const std::string& to = "jane@example.com") {
    return sg::EmailMessage("m" + std::to_string(i), "Body", "shop@example.com", {to});
}

/// An outbox whose sends wait until released: keeps the workers busy on purpose.
struct GatedOutbox : sg::testing::OutboxTransport {
    std::mutex mutex;
    std::condition_variable opened;
    bool open = false;
    std::atomic<int> batches{0};

    sg::HttpResponse send(const sg::HttpRequest& request) override {
        {
            std::unique_lock<std::mutex> lock(mutex);
            opened.wait(lock, [this] { return open; });
        }
        return OutboxTransport::send(request);
    }
    std::unique_ptr<sg::TransportBatch> open_batch(std::size_t max_in_flight) override {
        ++batches;
        return sg::Transport::open_batch(max_in_flight);
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex);
        open = true;
        opened.notify_all();
    }
};

struct Fixture {
    std::shared_ptr<GatedOutbox> outbox = std::make_shared<GatedOutbox>();
    std::shared_ptr<sg::SendgridBackend> backend;
    std::mutex mutex;
    std::map<std::string, int> emitted;
    std::set<std::thread::id> emitting_threads;
    sg::ScopedConnection counting;

    explicit Fixture(std::size_t in_flight = 8) {
        sg::Settings settings;
        settings.api_key = "SG.background";
        settings.max_in_flight = in_flight;
        sg::BackendOptions options;
        options.transport = outbox;
        options.fail_silently = true;
        backend = std::make_shared<sg::SendgridBackend>(settings, options);
        counting = sg::sendgrid_email_sent.connect(
            [this](const sg::SendgridBackend&, const sg::EmailMessage& message, bool) {
                std::lock_guard<std::mutex> lock(mutex);
                ++emitted[message.subject];
                emitting_threads.insert(std::this_thread::get_id());
            });
    }
};

}  // namespace

TEST_CASE("submit returns at once; each future holds the final outcome", "[background]") {
    Fixture fixture;
    std::vector<std::future<sg::SendOutcome>> outcomes;
    {
        sg::BackgroundSender mailer(fixture.backend);
        for (int i = 0; i < 100; ++i) outcomes.push_back(mailer.submit(mail(i)));
        outcomes.push_back(mailer.submit(mail(100, "not-an-address")));
        // Nothing was sent yet: the transport is still closed, and submit did not wait for it.
        CHECK(fixture.outbox->size() == 0);
        fixture.outbox->release();
        mailer.drain();
        CHECK(mailer.waiting() == 0);
    }
    for (int i = 0; i < 100; ++i) CHECK(outcomes[static_cast<std::size_t>(i)].get().accepted());
    CHECK(outcomes[100].get().status == sg::SendStatus::invalid);
    CHECK(fixture.outbox->size() == 100);  // counted where the requests landed
    std::lock_guard<std::mutex> lock(fixture.mutex);
    CHECK(fixture.emitted.size() == 101);
    for (const auto& [subject, count] : fixture.emitted) CHECK(count == 1);
    CHECK(fixture.emitting_threads.count(std::this_thread::get_id()) == 0);  // on a worker
}

TEST_CASE("workers send what is waiting in batches of up to max_in_flight", "[background]") {
    Fixture fixture(8);
    {
        sg::BackgroundSender mailer(fixture.backend);
        // While the first message blocks the worker, the rest pile up.
        for (int i = 0; i < 25; ++i) mailer.submit(mail(i), nullptr);
        std::this_thread::sleep_for(20ms);
        fixture.outbox->release();
    }
    CHECK(fixture.outbox->size() == 25);
    // 1 + 8 + 8 + 8 at most, 25 one by one at worst: batched means fewer batches than messages.
    CHECK(fixture.outbox->batches <= 5);
}

TEST_CASE("a full queue refuses or blocks, as asked", "[background]") {
    Fixture fixture;
    sg::BackgroundOptions options;
    options.capacity = 2;
    SECTION("refuse") {
        options.when_full = sg::BackgroundOptions::WhenFull::refuse;
        sg::BackgroundSender mailer(fixture.backend, options);
        mailer.submit(mail(0), nullptr);  // the worker takes it and waits at the closed gate
        std::this_thread::sleep_for(20ms);
        mailer.submit(mail(1), nullptr);
        mailer.submit(mail(2), nullptr);
        CHECK_THROWS_AS(mailer.submit(mail(3), nullptr), sg::QueueFull);
        fixture.outbox->release();
    }
    SECTION("block") {
        sg::BackgroundSender mailer(fixture.backend, options);
        mailer.submit(mail(0), nullptr);
        std::this_thread::sleep_for(20ms);
        mailer.submit(mail(1), nullptr);
        mailer.submit(mail(2), nullptr);
        std::atomic<bool> returned{false};
        std::thread blocked([&] {
            mailer.submit(mail(3), nullptr);
            returned = true;
        });
        std::this_thread::sleep_for(50ms);
        CHECK_FALSE(returned);  // waiting for room
        fixture.outbox->release();
        blocked.join();
        CHECK(returned);
    }
    CHECK(fixture.outbox->size() ==
          (options.when_full == sg::BackgroundOptions::WhenFull::refuse ? 3u : 4u));
}

TEST_CASE("drain with a deadline says whether everything is done", "[background]") {
    Fixture fixture;
    sg::BackgroundSender mailer(fixture.backend);
    auto outcome = mailer.submit(mail(0));
    CHECK_FALSE(mailer.drain(std::chrono::steady_clock::now() + 30ms));
    fixture.outbox->release();
    CHECK(mailer.drain(std::chrono::steady_clock::now() + 5s));
    CHECK(outcome.get().accepted());
}

TEST_CASE("the destructor sends every accepted message before it returns", "[background]") {
    Fixture fixture;
    std::vector<std::future<sg::SendOutcome>> outcomes;
    std::thread opener;
    {
        sg::BackgroundOptions options;
        options.workers = 3;
        sg::BackgroundSender mailer(fixture.backend, options);
        for (int i = 0; i < 60; ++i) outcomes.push_back(mailer.submit(mail(i)));
        opener = std::thread([&] {
            std::this_thread::sleep_for(30ms);
            fixture.outbox->release();
        });
    }  // no drain: the destructor must not drop the 60
    opener.join();
    for (auto& outcome : outcomes) {
        REQUIRE(outcome.wait_for(0s) == std::future_status::ready);
        CHECK(outcome.get().accepted());
    }
    CHECK(fixture.outbox->size() == 60);
}

TEST_CASE("callbacks run on the worker after the emission; a throwing one stops nothing",
          "[background]") {
    Fixture fixture;
    fixture.outbox->release();
    std::atomic<int> called{0};
    {
        sg::BackgroundSender mailer(fixture.backend);
        for (int i = 0; i < 10; ++i) {
            mailer.submit(mail(i), [&, i](const sg::EmailMessage& message) {
                CHECK(message.outcome.accepted());
                ++called;
                if (i == 3) throw std::runtime_error("a careless callback");
            });
        }
        mailer.drain();
    }
    CHECK(called == 10);
    CHECK(fixture.outbox->size() == 10);
}

TEST_CASE("over HTTP: a refused recipient's future says why", "[background][http]") {
    sg::testing::FakeSendgridServer server;
    server.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));
    // fail_silently off: the sender copes.
    const auto backend = std::make_shared<const sg::SendgridBackend>(server.settings());
    sg::BackgroundSender mailer(backend);
    auto good = mailer.submit(mail(1));
    auto bad = mailer.submit(mail(2, "bounce@example.com"));
    CHECK(good.get().accepted());
    const sg::SendOutcome refused = bad.get();
    CHECK(refused.status == sg::SendStatus::rejected);
    CHECK(refused.http_status == 400);
    CHECK(server.received_count() == 2);
}

TEST_CASE("the sender shares its backend: none can be destroyed under it", "[background]") {
    // A sender kept a reference before, and destroying the backend while it drained was a
    // use-after-free; now there is no constructor that takes one.
    static_assert(!std::is_constructible_v<sg::BackgroundSender, const sg::SendgridBackend&>);
    static_assert(!std::is_constructible_v<sg::BackgroundSender, sg::SendgridBackend&>);
    Fixture fixture;
    std::weak_ptr<sg::SendgridBackend> watch = fixture.backend;
    {
        sg::BackgroundSender mailer(std::move(fixture.backend));  // the only owner now
        for (int i = 0; i < 20; ++i) mailer.submit(mail(i), nullptr);
        CHECK_FALSE(watch.expired());
        fixture.outbox->release();
    }  // the destructor sends all 20 through the backend it kept alive, then lets it go
    CHECK(watch.expired());
    CHECK(fixture.outbox->size() == 20);
    CHECK_THROWS_AS(sg::BackgroundSender(nullptr), sg::ImproperlyConfigured);
}

/// capacity 1: while the worker sends "m0", "m1" fills the queue; then code on the worker thread
/// submits an alert. Waiting for room there would wait for the worker itself.
void alert_from_the_worker(bool from_handler) {
    Fixture fixture;
    sg::BackgroundOptions options;
    options.capacity = 1;
    std::atomic<int> alerts{0};
    {
        sg::BackgroundSender mailer(fixture.backend, options);
        auto alert = [&] {
            mailer.submit(mail(100, "oncall@example.com"), nullptr);
            ++alerts;
        };
        sg::ScopedConnection alerting;
        if (from_handler) {
            alerting = sg::sendgrid_email_sent.connect(
                [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool) {
                    if (message.subject == "m0") alert();
                });
            mailer.submit(mail(0), nullptr);
        } else {
            mailer.submit(mail(0), [&](const sg::EmailMessage&) { alert(); });
        }
        std::this_thread::sleep_for(20ms);  // the worker holds m0 at the closed gate
        mailer.submit(mail(1), nullptr);    // the queue is full now
        fixture.outbox->release();
        CHECK(mailer.drain(std::chrono::steady_clock::now() + 10s));
    }
    CHECK(alerts == 1);
    CHECK(fixture.outbox->size() == 3);  // m0, m1 and the alert reached the transport
    std::lock_guard<std::mutex> lock(fixture.mutex);
    CHECK(fixture.emitted == std::map<std::string, int>{{"m0", 1}, {"m1", 1}, {"m100", 1}});
}

TEST_CASE("a submit from a worker thread never waits for room", "[background]") {
    SECTION("from a completion callback") { alert_from_the_worker(false); }
    SECTION("from a sendgrid_email_sent handler running on the worker") {
        alert_from_the_worker(true);
    }
}

TEST_CASE("two senders whose callbacks submit to each other do not deadlock", "[background]") {
    Fixture fixture;
    sg::BackgroundOptions options;
    options.capacity = 1;
    sg::BackgroundSender first(fixture.backend, options);
    sg::BackgroundSender second(fixture.backend, options);
    first.submit(mail(0), [&](const sg::EmailMessage&) { second.submit(mail(10), nullptr); });
    second.submit(mail(1), [&](const sg::EmailMessage&) { first.submit(mail(11), nullptr); });
    std::this_thread::sleep_for(20ms);  // both workers hold a message at the closed gate
    first.submit(mail(2), nullptr);     // both queues full
    second.submit(mail(3), nullptr);
    fixture.outbox->release();
    // second's callback may hand "m11" to first after first has drained, so first drains again:
    // each drain returns only after its callbacks ran, and "m10"/"m11" submit nothing.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    CHECK(first.drain(deadline));
    CHECK(second.drain(deadline));
    CHECK(first.drain(deadline));
    CHECK(fixture.outbox->size() == 6);
}

TEST_CASE("drain on the sender's own worker is refused, not a hang", "[background]") {
    Fixture fixture;
    fixture.outbox->release();
    std::string refusal;
    {
        sg::BackgroundSender mailer(fixture.backend);
        mailer.submit(mail(0), [&](const sg::EmailMessage&) {
            try {
                mailer.drain();
            } catch (const sg::WouldDeadlock& error) {
                refusal = error.what();
            }
        });
        CHECK(mailer.drain(std::chrono::steady_clock::now() + 10s));
    }
    CHECK_THAT(refusal, Catch::Matchers::Contains("own worker thread"));
}

TEST_CASE("a callback that throws is reported through on_handler_error", "[background]") {
    auto outbox = std::make_shared<sg::testing::OutboxTransport>();
    std::mutex mutex;
    std::vector<std::string> reported;
    sg::Settings settings;
    settings.api_key = "SG.background";
    sg::BackendOptions backend_options;
    backend_options.transport = outbox;
    backend_options.on_handler_error = [&](const sg::EmailMessage& message,
                                           std::exception_ptr error) {
        std::lock_guard<std::mutex> lock(mutex);
        reported.push_back(message.subject + ": " + sg::detail::describe_exception(error));
    };
    {
        sg::BackgroundSender mailer(
            std::make_shared<const sg::SendgridBackend>(settings, backend_options));
        for (int i = 0; i < 3; ++i) {
            mailer.submit(mail(i), [i](const sg::EmailMessage&) {
                if (i == 1) throw std::runtime_error("a careless callback");
            });
        }
    }
    CHECK(outbox->size() == 3);
    CHECK(reported == std::vector<std::string>{"m1: a careless callback"});
}

TEST_CASE("BackgroundOptions out of range are refused naming the field", "[background]") {
    Fixture fixture;
    sg::BackgroundOptions options;
    options.workers = sg::BackgroundOptions::max_workers + 1;
    CHECK_THROWS_WITH(sg::BackgroundSender(fixture.backend, options),
                      Catch::Matchers::Contains("BackgroundOptions::workers: is 257"));
    options.workers = static_cast<std::size_t>(-1);
    CHECK_THROWS_AS(sg::BackgroundSender(fixture.backend, options), sg::ImproperlyConfigured);
    options.workers = 1;
    options.batch = static_cast<std::size_t>(-1);
    CHECK_THROWS_WITH(sg::BackgroundSender(fixture.backend, options),
                      Catch::Matchers::Contains("BackgroundOptions::batch"));
    options.batch = sg::BackgroundOptions::max_batch;
    options.capacity = static_cast<std::size_t>(-1);  // any capacity: nothing adds to it
    fixture.outbox->release();
    sg::BackgroundSender mailer(fixture.backend, options);
    CHECK(mailer.submit(mail(0)).get().accepted());
}

TEST_CASE("a sender whose last owner is released on its own worker finishes its messages",
          "[background]") {
    // A callback that keeps the sender alive (captures a shared_ptr to it) can hold the last
    // reference: the destructor then runs on the worker, which cannot join itself.
    Fixture fixture;
    std::atomic<int> called{0};
    auto mailer = std::make_shared<sg::BackgroundSender>(fixture.backend);
    std::weak_ptr<sg::BackgroundSender> watch = mailer;
    std::vector<std::future<sg::SendOutcome>> outcomes;
    mailer->submit(mail(0), [keep = mailer, &called](const sg::EmailMessage&) { ++called; });
    for (int i = 1; i < 5; ++i) outcomes.push_back(mailer->submit(mail(i)));
    mailer.reset();  // the callback holds the last reference now
    fixture.outbox->release();
    for (auto& outcome : outcomes) {
        REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        CHECK(outcome.get().accepted());
    }
    CHECK(called == 1);
    for (int i = 0; i < 500 && !watch.expired(); ++i) std::this_thread::sleep_for(10ms);
    CHECK(watch.expired());
    CHECK(fixture.outbox->size() == 5);
}

TEST_CASE("drain() without a deadline is refused on any sender's worker", "[background]") {
    // Two senders whose callbacks each drain the other would wait for each other forever.
    Fixture fixture;
    fixture.outbox->release();
    std::string refusal;
    bool bounded = false;
    {
        sg::BackgroundSender first(fixture.backend);
        sg::BackgroundSender second(fixture.backend);
        first.submit(mail(0), [&](const sg::EmailMessage&) {
            try {
                second.drain();
            } catch (const sg::WouldDeadlock& error) {
                refusal = error.what();
            }
            bounded = second.drain(std::chrono::steady_clock::now() + 5s);  // allowed: it ends
        });
        CHECK(first.drain(std::chrono::steady_clock::now() + 10s));
    }
    CHECK_THAT(refusal, Catch::Matchers::Contains("another sender's worker"));
    CHECK(bounded);
}
