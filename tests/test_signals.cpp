#include <sendgrid_backend/signals.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/signals2/signal_type.hpp>

#include "catch.hpp"

namespace {

using sendgrid_backend::Connection;
using sendgrid_backend::Position;
using sendgrid_backend::ScopedConnection;

struct Sender {
    std::string name;
};
struct Message {
    std::string subject;
};

using TestSignal = sendgrid_backend::Signal<Sender, Message>;

// boost_signal_type is spelled out by hand; it must stay the type signal_type builds from the
// same choices, since users name it.
template <class Mutex>
using SignalTypeBuilt = typename boost::signals2::signal_type<
    void(const Sender&, const Message&, bool),
    boost::signals2::keywords::combiner_type<sendgrid_backend::detail::RobustAwareCombiner>,
    boost::signals2::keywords::mutex_type<Mutex>,
    boost::signals2::keywords::slot_function_type<
        std::function<void(const Sender&, const Message&, bool)>>>::type;
static_assert(
    std::is_same_v<TestSignal::boost_signal_type, SignalTypeBuilt<boost::signals2::mutex>>);
static_assert(
    std::is_same_v<sendgrid_backend::Signal<Sender, Message,
                                            sendgrid_backend::SingleThreaded>::boost_signal_type,
                   SignalTypeBuilt<boost::signals2::dummy_mutex>>);

struct Call {
    std::string handler;
    std::string sender;
    std::string subject;
    bool fail_flag;
};

// Records every call as "handler:subject:fail_flag".
struct Recorder {
    std::vector<Call> calls;

    auto handler(std::string name) {
        return [this, name](const Sender& sender, const Message& message, bool fail_flag) {
            calls.push_back(Call{name, sender.name, message.subject, fail_flag});
        };
    }
    std::vector<std::string> order() const {
        std::vector<std::string> names;
        for (const auto& call : calls) names.push_back(call.handler);
        return names;
    }
};

const Sender backend{"backend-1"};
const Message hello{"hello"};

}  // namespace

TEST_CASE("a connected lambda receives sender, message and fail_flag", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    signal.connect(recorder.handler("a"));

    signal.send(backend, hello, true);
    signal.send(backend, Message{"second"}, false);

    REQUIRE(recorder.calls.size() == 2);
    CHECK(recorder.calls[0].sender == "backend-1");
    CHECK(recorder.calls[0].subject == "hello");
    CHECK(recorder.calls[0].fail_flag);
    CHECK(recorder.calls[1].subject == "second");
    CHECK_FALSE(recorder.calls[1].fail_flag);
}

TEST_CASE("the sender and message are passed by reference, not copied", "[signals]") {
    TestSignal signal;
    const Message* seen = nullptr;
    signal.connect([&](const Sender&, const Message& message, bool) { seen = &message; });
    signal.send(backend, hello, false);
    CHECK(seen == &hello);
}

TEST_CASE("handlers are called in connection order, front and back honoured", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    signal.connect(recorder.handler("first"));
    signal.connect(recorder.handler("second"));
    signal.connect(recorder.handler("zeroth"), Position::front);
    signal.connect(recorder.handler("third"), Position::back);

    signal.send(backend, hello, false);

    CHECK(recorder.order() == std::vector<std::string>{"zeroth", "first", "second", "third"});
}

TEST_CASE("any callable of the handler shape connects", "[signals]") {
    TestSignal signal;
    static int free_function_calls = 0;
    struct Functor {
        int* calls;
        void operator()(const Sender&, const Message&, bool) const { ++*calls; }
    };
    int functor_calls = 0;
    std::function<void(const Sender&, const Message&, bool)> function =
        [&](const Sender&, const Message&, bool) { ++functor_calls; };

    signal.connect(+[](const Sender&, const Message&, bool) { ++free_function_calls; });
    signal.connect(Functor{&functor_calls});
    signal.connect(function);
    signal.send(backend, hello, false);

    CHECK(free_function_calls == 1);
    CHECK(functor_calls == 2);
}

TEST_CASE("disconnecting by connection", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    Connection a = signal.connect(recorder.handler("a"));
    signal.connect(recorder.handler("b"));

    CHECK(signal.disconnect(a));
    CHECK_FALSE(signal.disconnect(a));  // already gone
    CHECK_FALSE(a.connected());
    signal.send(backend, hello, false);

    CHECK(recorder.order() == std::vector<std::string>{"b"});
    CHECK(signal.num_handlers() == 1);
}

TEST_CASE("disconnecting through the Connection itself", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    Connection a = signal.connect(recorder.handler("a"));
    a.disconnect();
    signal.send(backend, hello, false);
    CHECK(recorder.calls.empty());
    CHECK_FALSE(signal.has_listeners());
}

TEST_CASE("disconnect_all removes every handler, uid ones included", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    signal.connect(recorder.handler("a"));
    signal.connect("uid", recorder.handler("b"));
    REQUIRE(signal.num_handlers() == 2);

    signal.disconnect_all();
    signal.send(backend, hello, false);

    CHECK(recorder.calls.empty());
    CHECK(signal.num_handlers() == 0);
    CHECK_FALSE(signal.disconnect("uid"));
    // The uid is free again.
    signal.connect("uid", recorder.handler("c"));
    CHECK(signal.num_handlers() == 1);
}

TEST_CASE("a ScopedConnection disconnects at the end of its scope", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    {
        ScopedConnection scoped = signal.connect(recorder.handler("scoped"));
        signal.send(backend, hello, false);
        CHECK(signal.num_handlers() == 1);
    }
    signal.send(backend, hello, false);
    CHECK(recorder.order() == std::vector<std::string>{"scoped"});
    CHECK(signal.num_handlers() == 0);
}

TEST_CASE("dispatch_uid connects at most once per uid", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    Connection first = signal.connect("audit-log", recorder.handler("first"));
    Connection again = signal.connect("audit-log", recorder.handler("again"));
    signal.connect("metrics", recorder.handler("metrics"));

    CHECK(first == again);
    CHECK(signal.num_handlers() == 2);
    signal.send(backend, hello, false);
    CHECK(recorder.order() == std::vector<std::string>{"first", "metrics"});

    SECTION("disconnect by uid reports whether a handler was connected") {
        CHECK(signal.disconnect("audit-log"));
        CHECK_FALSE(signal.disconnect("audit-log"));
        CHECK_FALSE(signal.disconnect("never-connected"));
        CHECK_FALSE(first.connected());
        CHECK(signal.num_handlers() == 1);
    }
    SECTION("a uid whose handler was disconnected another way can connect again") {
        first.disconnect();
        Connection third = signal.connect("audit-log", recorder.handler("third"));
        CHECK(third.connected());
        CHECK(third != first);
        CHECK(signal.num_handlers() == 2);
    }
}

TEST_CASE("send propagates a handler's exception and stops there", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    signal.connect(recorder.handler("before"));
    signal.connect([](const Sender&, const Message&, bool) { throw std::runtime_error("boom"); });
    signal.connect(recorder.handler("after"));

    CHECK_THROWS_WITH(signal.send(backend, hello, false), "boom");
    CHECK(recorder.order() == std::vector<std::string>{"before"});
}

TEST_CASE("send_robust calls every handler and returns what they threw", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    signal.connect(recorder.handler("a"));
    signal.connect([](const Sender&, const Message&, bool) { throw std::runtime_error("one"); });
    signal.connect(recorder.handler("b"));
    signal.connect([](const Sender&, const Message&, bool) { throw 42; });
    signal.connect(recorder.handler("c"));

    std::vector<std::exception_ptr> errors = signal.send_robust(backend, hello, true);

    CHECK(recorder.order() == std::vector<std::string>{"a", "b", "c"});
    REQUIRE(errors.size() == 2);
    CHECK_THROWS_WITH(std::rethrow_exception(errors[0]), "one");
    CHECK_THROWS_AS(std::rethrow_exception(errors[1]), int);

    SECTION("with no errors it returns an empty list") {
        TestSignal quiet;
        quiet.connect(recorder.handler("d"));
        CHECK(quiet.send_robust(backend, hello, false).empty());
    }
    SECTION("a plain send afterwards propagates again") {
        CHECK_THROWS_WITH(signal.send(backend, hello, false), "one");
    }
}

TEST_CASE("a plain send started inside a robust send's handler still propagates", "[signals]") {
    TestSignal outer;
    TestSignal inner;
    inner.connect([](const Sender&, const Message&, bool) { throw std::runtime_error("inner"); });
    bool inner_propagated = false;
    outer.connect([&](const Sender& s, const Message& m, bool f) {
        try {
            inner.send(s, m, f);
        } catch (const std::runtime_error&) {
            inner_propagated = true;
        }
    });
    CHECK(outer.send_robust(backend, hello, false).empty());
    CHECK(inner_propagated);
}

TEST_CASE("a handler may disconnect itself during a send", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    auto self = std::make_shared<Connection>();
    *self = signal.connect([&, self](const Sender&, const Message&, bool) {
        recorder.calls.push_back(Call{"once", "", "", false});
        self->disconnect();
    });
    signal.connect(recorder.handler("stays"));

    signal.send(backend, hello, false);
    signal.send(backend, hello, false);

    CHECK(recorder.order() == std::vector<std::string>{"once", "stays", "stays"});
    CHECK(signal.num_handlers() == 1);
}

TEST_CASE("a handler may connect another handler during a send", "[signals]") {
    TestSignal signal;
    Recorder recorder;
    bool connected_late = false;
    signal.connect([&](const Sender&, const Message&, bool) {
        if (!connected_late) {
            connected_late = true;
            signal.connect(recorder.handler("late"));
        }
    });

    signal.send(backend, hello, false);
    const std::size_t calls_after_first_send = recorder.calls.size();
    signal.send(backend, hello, false);

    // The running send works on the handler list it started with; the next send sees "late".
    CHECK(calls_after_first_send == 0);
    CHECK(recorder.order() == std::vector<std::string>{"late"});
    CHECK(signal.num_handlers() == 2);
}

TEST_CASE("a handler tracking a shared_ptr owner goes away with the owner", "[signals]") {
    TestSignal signal;
    struct Listener {
        int calls = 0;
    };
    auto listener = std::make_shared<Listener>();
    signal.connect_tracked(
        listener, [raw = listener.get()](const Sender&, const Message&, bool) { ++raw->calls; });

    signal.send(backend, hello, false);
    CHECK(listener->calls == 1);
    CHECK(signal.num_handlers() == 1);

    std::weak_ptr<Listener> watch = listener;
    listener.reset();
    CHECK(watch.expired());

    signal.send(backend, hello, false);  // would touch freed memory if the handler survived
    CHECK(signal.num_handlers() == 0);
    CHECK_FALSE(signal.has_listeners());
    CHECK(signal.send_robust(backend, hello, false).empty());
}

TEST_CASE("has_listeners and num_handlers follow connections", "[signals]") {
    TestSignal signal;
    CHECK_FALSE(signal.has_listeners());
    CHECK(signal.num_handlers() == 0);
    Connection a = signal.connect([](const Sender&, const Message&, bool) {});
    Connection b = signal.connect([](const Sender&, const Message&, bool) {});
    CHECK(signal.has_listeners());
    CHECK(signal.num_handlers() == 2);
    a.disconnect();
    CHECK(signal.num_handlers() == 1);
    b.disconnect();
    CHECK_FALSE(signal.has_listeners());
}

TEST_CASE("sending with no handlers is a no-op in both forms", "[signals]") {
    TestSignal signal;
    signal.send(backend, hello, false);
    CHECK(signal.send_robust(backend, hello, false).empty());
}

TEST_CASE("handlers connected through boost_signal() are called by both forms of send",
          "[signals]") {
    // Sending calls handlers through a pointer that connecting sets; Boost's own connect, reached
    // through boost_signal(), must set it too.
    TestSignal signal;
    Recorder recorder;
    signal.boost_signal().connect(2, recorder.handler("group 2"));
    signal.boost_signal().connect(1, recorder.handler("group 1"));
    signal.send(backend, hello, false);
    CHECK(signal.send_robust(backend, hello, true).empty());
    CHECK(recorder.order() == std::vector<std::string>{"group 1", "group 2", "group 1", "group 2"});
    CHECK(recorder.calls.back().fail_flag);
    signal.disconnect_all();
    signal.send(backend, hello, false);  // connected once, none now: nothing is called
    CHECK(recorder.calls.size() == 4);
}

TEST_CASE("the single-threaded policy behaves the same on one thread", "[signals]") {
    sendgrid_backend::Signal<Sender, Message, sendgrid_backend::SingleThreaded> signal;
    Recorder recorder;
    signal.connect("uid", recorder.handler("a"));
    signal.connect("uid", recorder.handler("dup"));
    signal.connect([](const Sender&, const Message&, bool) { throw std::runtime_error("x"); });
    signal.connect(recorder.handler("b"));

    CHECK(signal.send_robust(backend, hello, false).size() == 1);
    CHECK(recorder.order() == std::vector<std::string>{"a", "b"});
    CHECK_THROWS(signal.send(backend, hello, false));
    CHECK(signal.disconnect("uid"));
}

TEST_CASE("BasicSignal serves other handler shapes", "[signals]") {
    sendgrid_backend::BasicSignal<void(const Sender&, Message&)> pre_send;
    pre_send.connect([](const Sender&, Message& message) { message.subject += " [edited]"; });
    Message message{"draft"};
    pre_send.send(backend, message);
    CHECK(message.subject == "draft [edited]");
}

// Defined in test_signals_other_tu.cpp.
std::size_t connect_email_sent_handler_in_other_tu();
const void* email_sent_address_in_other_tu();

TEST_CASE("sendgrid_email_sent is one instance across translation units", "[signals]") {
    auto& email_sent = sendgrid_backend::sendgrid_email_sent;
    CHECK(email_sent_address_in_other_tu() == &email_sent);
    const std::size_t before = email_sent.num_handlers();
    CHECK(connect_email_sent_handler_in_other_tu() == before + 1);
    CHECK(email_sent.num_handlers() == before + 1);
    CHECK(email_sent.disconnect("other-tu"));
    CHECK(email_sent.num_handlers() == before);
}

TEST_CASE("observers: called on every send before the handlers, until disconnected",
          "[signals][observe]") {
    TestSignal signal;
    std::vector<std::string> calls;
    Connection handler = signal.connect(
        [&](const Sender&, const Message& m, bool) { calls.push_back("handler " + m.subject); });
    sendgrid_backend::ObserverConnection first =
        signal.observe([&](const Sender&, const Message& m, bool) noexcept {
            calls.push_back("first " + m.subject);
        });
    sendgrid_backend::ObserverConnection second =
        signal.observe([&](const Sender&, const Message& m, bool) noexcept {
            calls.push_back("second " + m.subject);
        });
    CHECK(signal.num_handlers() == 3);
    signal.send(Sender{}, Message{"a"}, false);
    CHECK(signal.send_robust(Sender{}, Message{"b"}, true).empty());
    CHECK(calls == std::vector<std::string>{"first a", "second a", "handler a", "first b",
                                            "second b", "handler b"});
    CHECK(first.disconnect());
    CHECK_FALSE(first.disconnect());  // once
    calls.clear();
    signal.send(Sender{}, Message{"c"}, false);
    CHECK(calls == std::vector<std::string>{"second c", "handler c"});
    {
        const sendgrid_backend::ObserverConnection moved = std::move(second);
        CHECK_FALSE(second.disconnect());  // moved from: owns nothing
    }
    calls.clear();
    signal.send(Sender{}, Message{"d"}, false);
    CHECK(calls == std::vector<std::string>{"handler d"});  // removed with `moved`
    CHECK(signal.num_handlers() == 1);
}

TEST_CASE("a signal with only observers; a handler connected later is called",
          "[signals][observe]") {
    TestSignal signal;
    int observed = 0;
    int handled = 0;
    const auto observer =
        signal.observe([&](const Sender&, const Message&, bool) noexcept { ++observed; });
    CHECK(signal.has_listeners());
    signal.send(Sender{}, Message{"x"}, false);
    const ScopedConnection handler =
        signal.connect([&](const Sender&, const Message&, bool) { ++handled; });
    signal.send(Sender{}, Message{"y"}, false);
    CHECK(observed == 2);
    CHECK(handled == 1);
}

TEST_CASE("an observer connection may outlive its signal; what it captured is released",
          "[signals][observe]") {
    auto state = std::make_shared<int>(0);
    sendgrid_backend::ObserverConnection connection;
    {
        TestSignal signal;
        connection =
            signal.observe([state](const Sender&, const Message&, bool) noexcept { ++*state; });
        signal.send(Sender{}, Message{"x"}, false);
        CHECK(state.use_count() == 2);
    }
    CHECK(*state == 1);
    CHECK(state.use_count() == 1);         // the signal's list went with the signal
    CHECK_FALSE(connection.disconnect());  // nothing to remove: no crash (ASan checks it)
}

TEST_CASE("an observer whose captures disconnect another observer, released on disconnect",
          "[signals][observe]") {
    // Releasing the outer observer destroys the inner one's connection, which disconnects from
    // the same signal: the list's lock must not be held then (it would wait for itself).
    TestSignal signal;
    int inner_calls = 0;
    auto inner = std::make_shared<sendgrid_backend::ObserverConnection>(
        signal.observe([&](const Sender&, const Message&, bool) noexcept { ++inner_calls; }));
    sendgrid_backend::ObserverConnection outer =
        signal.observe([owned = std::move(inner)](const Sender&, const Message&, bool) noexcept {});
    auto done = std::async(std::launch::async, [&] { return outer.disconnect(); });
    if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        std::fputs("disconnecting an observer deadlocked\n", stderr);
        std::_Exit(1);  // the thread cannot be joined: end the test program, failed
    }
    CHECK(done.get());
    signal.send(Sender{}, Message{"x"}, false);
    CHECK(inner_calls == 0);  // the inner observer went with the outer one
    CHECK(signal.num_handlers() == 0);
}

TEST_CASE("disconnect_all removes observers too", "[signals][observe]") {
    TestSignal signal;
    int calls = 0;
    auto observer = signal.observe([&](const Sender&, const Message&, bool) noexcept { ++calls; });
    const Connection handler =
        signal.connect([&](const Sender&, const Message&, bool) { ++calls; });
    signal.disconnect_all();
    CHECK_FALSE(signal.has_listeners());
    signal.send(Sender{}, Message{"x"}, false);
    CHECK(calls == 0);
    CHECK_FALSE(observer.disconnect());  // already gone
}
