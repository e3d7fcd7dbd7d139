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
    std::unique_ptr<sg::SendgridBackend> backend;
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
        backend = std::make_unique<sg::SendgridBackend>(settings, options);
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
        sg::BackgroundSender mailer(*fixture.backend);
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
        sg::BackgroundSender mailer(*fixture.backend);
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
        sg::BackgroundSender mailer(*fixture.backend, options);
        mailer.submit(mail(0), nullptr);  // the worker takes it and waits at the closed gate
        std::this_thread::sleep_for(20ms);
        mailer.submit(mail(1), nullptr);
        mailer.submit(mail(2), nullptr);
        CHECK_THROWS_AS(mailer.submit(mail(3), nullptr), sg::QueueFull);
        fixture.outbox->release();
    }
    SECTION("block") {
        sg::BackgroundSender mailer(*fixture.backend, options);
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
    sg::BackgroundSender mailer(*fixture.backend);
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
        sg::BackgroundSender mailer(*fixture.backend, options);
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
        sg::BackgroundSender mailer(*fixture.backend);
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
    const sg::SendgridBackend backend(server.settings());  // fail_silently off: the sender copes
    sg::BackgroundSender mailer(backend);
    auto good = mailer.submit(mail(1));
    auto bad = mailer.submit(mail(2, "bounce@example.com"));
    CHECK(good.get().accepted());
    const sg::SendOutcome refused = bad.get();
    CHECK(refused.status == sg::SendStatus::rejected);
    CHECK(refused.http_status == 400);
    CHECK(server.received_count() == 2);
}
