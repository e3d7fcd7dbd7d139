#pragma once

/// @file
/// Signals: any number of handlers hang on an event and are called when it is sent.
///
/// The counterpart of `sendgrid_backend.signals` (and of Django's `django.dispatch.Signal`),
/// built on Boost.Signals2. `sendgrid_email_sent` fires after every send attempt:
///
/// @code
/// auto connection = sendgrid_backend::sendgrid_email_sent.connect(
///     [](const SendgridBackend& sender, const EmailMessage& message, bool fail_flag) {
///         log(message.subject, fail_flag ? "failed" : "sent");
///     });
/// @endcode

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/signals2/dummy_mutex.hpp>
#include <boost/signals2/mutex.hpp>
#include <boost/signals2/signal.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/signals/observers.hpp"
#include "sendgrid_backend/detail/signals/robust_combiner.hpp"
#include "sendgrid_backend/fwd.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Threading policy: connect, disconnect and send from any thread, also from inside a handler.
struct ThreadSafe {
    using mutex_type = boost::signals2::mutex;
};

/// Threading policy for a signal that is connected, disconnected and sent on one thread only:
/// no locks are taken (Boost's `dummy_mutex`). Using it from two threads is a data race.
struct SingleThreaded {
    using mutex_type = boost::signals2::dummy_mutex;
};

/// A handle on one connected handler; `disconnect()` on it is safe from any thread.
using Connection = boost::signals2::connection;
/// A `Connection` that disconnects its handler when it goes out of scope (RAII).
using ScopedConnection = boost::signals2::scoped_connection;

/// Where a new handler goes in the calling order.
enum class Position {
    back,   ///< after every handler connected so far (the default, Django's order)
    front,  ///< before every handler connected so far
};

/// A signal with any `void(Args...)` handler shape: the one implementation behind
/// `sendgrid_email_sent`, the pre-send hook and the webhook events.
///
/// Handlers are called in connection order (or as `Position` says), on the thread that sends.
/// With the default `ThreadSafe` policy every member may be called concurrently, also from inside
/// a handler; a handler connected during a send is first called by the next send, and one
/// disconnected during a send is not called again once `disconnect` has returned.
template <class... Args, class ThreadingPolicy>
class BasicSignal<void(Args...), ThreadingPolicy> {
  public:
    using signature_type = void(Args...);
    using mutex_type = typename ThreadingPolicy::mutex_type;
    /// The Boost.Signals2 signal underneath, for code that wants its full interface. Its slots
    /// hold a `std::function`, not Boost's default `boost::function`: GCC 12 at -O2 warns
    /// (-Wuninitialized, a false positive) inside boost::function's copy when it is inlined into
    /// the caller of `connect`, which stopped users' -Werror builds.
    /// Spelled out rather than built with `boost::signals2::signal_type`, whose Boost.Parameter
    /// machinery every including file would compile for nothing (docs/benchmarks.md, compile
    /// cost); the type is the same.
    using boost_signal_type =
        boost::signals2::signal<void(Args...), detail::RobustAwareCombiner, int, std::less<int>,
                                std::function<void(Args...)>,
                                boost::function<void(const boost::signals2::connection&, Args...)>,
                                mutex_type>;

    constexpr BasicSignal() noexcept = default;
    BasicSignal(const BasicSignal&) = delete;
    BasicSignal& operator=(const BasicSignal&) = delete;
    ~BasicSignal() {
        if (CoreBase* core = core_.load(std::memory_order_acquire)) core->ops->destroy(core);
    }

    /// Connects any callable of the handler shape (a lambda, a function, a `std::function`).
    /// Connecting the same callable twice calls it twice; use a dispatch_uid to prevent that.
    template <class Handler>
    Connection connect(Handler&& handler, Position position = Position::back) {
        require_handler_shape<Handler>();
        return boost_core().signal.connect(slot_type<>(std::forward<Handler>(handler)),
                                           at(position));
    }

    /// Connects `handler` unless a handler with this `dispatch_uid` is still connected, in which
    /// case it returns that handler's connection and drops `handler` (Django's `dispatch_uid`).
    template <class Handler>
    Connection connect(std::string_view dispatch_uid, Handler&& handler,
                       Position position = Position::back) {
        require_handler_shape<Handler>();
        Core& core = boost_core();
        std::lock_guard<mutex_type> lock(core.uid_mutex);
        auto found = core.connections_by_uid.find(dispatch_uid);
        if (found != core.connections_by_uid.end() && found->second.connected()) {
            return found->second;
        }
        Connection connection =
            core.signal.connect(slot_type<>(std::forward<Handler>(handler)), at(position));
        if (found != core.connections_by_uid.end()) {
            found->second = connection;
        } else {
            core.connections_by_uid.emplace(std::string(dispatch_uid), connection);
        }
        return connection;
    }

    /// Connects a handler that lives only as long as `owner`: once the last `shared_ptr` to the
    /// owner is gone the handler is disconnected by itself (Django's weak receivers). While a
    /// send calls the handler, the owner is kept alive.
    template <class Owner, class Handler>
    Connection connect_tracked(const std::shared_ptr<Owner>& owner, Handler&& handler,
                               Position position = Position::back) {
        require_handler_shape<Handler>();
        slot_type<> slot(std::forward<Handler>(handler));
        slot.track_foreign(std::weak_ptr<Owner>(owner));
        return boost_core().signal.connect(slot, at(position));
    }

    /// Connects an observer: a handler that cannot throw (it must be `noexcept`), called on
    /// every send before the other handlers, in the order observers were connected, with no lock
    /// taken per call. For counting (PrometheusMetrics): a signal whose only handlers are
    /// observers never runs Boost.Signals2's emission, which takes a lock per handler. The
    /// observer stays until the returned connection is disconnected or destroyed; a send already
    /// running may call it once more, and keeps it (and what it captured) alive until it returns.
    template <class Handler>
    [[nodiscard]] ObserverConnection observe(Handler&& handler) {
        require_handler_shape<Handler>();
        static_assert(!std::is_invocable_v<std::decay_t<Handler>&, Args...> ||
                          std::is_nothrow_invocable_v<std::decay_t<Handler>&, Args...>,
                      "an observer must be noexcept (it runs outside send_robust's net); "
                      "connect a handler that may throw with connect()");
        Core& core = this->core();
        const std::uint64_t id = core.observers->add(std::forward<Handler>(handler));
        core.observed.store(true, std::memory_order_release);
        std::weak_ptr<detail::ObserverList<Args...>> list = core.observers;
        return ObserverConnection([list = std::move(list), id] {
            const auto observers = list.lock();
            return observers && observers->remove(id);
        });
    }

    /// Disconnects the handler behind `connection`; returns whether it was still connected.
    bool disconnect(const Connection& connection) {
        const bool was_connected = connection.connected();
        connection.disconnect();
        return was_connected;
    }

    /// Disconnects the handler connected under `dispatch_uid`; returns whether there was one.
    bool disconnect(std::string_view dispatch_uid) {
        Core* core = existing_core();
        if (core == nullptr) return false;
        std::lock_guard<mutex_type> lock(core->uid_mutex);
        auto found = core->connections_by_uid.find(dispatch_uid);
        if (found == core->connections_by_uid.end()) {
            return false;
        }
        const bool was_connected = found->second.connected();
        found->second.disconnect();
        core->connections_by_uid.erase(found);
        return was_connected;
    }

    /// Disconnects every handler, observers included.
    void disconnect_all() {
        Core* core = existing_core();
        if (core == nullptr) return;
        core->observers->clear();
        std::lock_guard<mutex_type> lock(core->uid_mutex);
        core->signal.disconnect_all_slots();
        core->connections_by_uid.clear();
    }

    /// Calls every handler in order. The first exception a handler throws propagates to the
    /// caller and the handlers after it are not called (Django's `send`).
    void send(Args... args) const {
        if (CoreBase* core = core_.load(std::memory_order_acquire)) {
            core->ops->call(*core, nullptr, args...);
        }
    }

    /// Calls every handler, even after one threw, and returns what the handlers threw in the
    /// order they threw it; empty when every handler returned normally (Django's `send_robust`).
    std::vector<std::exception_ptr> send_robust(Args... args) const {
        std::vector<std::exception_ptr> errors;
        if (CoreBase* core = core_.load(std::memory_order_acquire)) {
            core->ops->call(*core, &errors, args...);
        }
        return errors;
    }

    /// Whether at least one handler (or observer) is connected.
    bool has_listeners() const { return num_handlers() != 0; }

    /// How many handlers are connected, observers included.
    std::size_t num_handlers() const {
        const Core* core = existing_core();
        return core == nullptr ? 0 : core->signal.num_slots() + core->observers->size();
    }

    /// The Boost.Signals2 signal underneath (for groups, shared_connection_block and the like).
    boost_signal_type& boost_signal() { return boost_core().signal; }

  private:
    // The Boost signal and everything else a connected signal needs live in a Core made by the
    // first connect, and what sending and destroying do with it goes through function pointers
    // that the Core carries. So a file that sends, or only includes this header, compiles none of
    // Boost's signal code: that is compiled where handlers are connected (otherwise the library's
    // global signals would put it in every including file). A signal that never had a handler
    // costs a send one atomic load.
    struct CoreBase;
    struct Ops {
        void (*call)(CoreBase&, std::vector<std::exception_ptr>*, Args...);
        void (*destroy)(CoreBase*) noexcept;
    };
    struct CoreBase {
        const Ops* ops;
    };
    struct Core : CoreBase {
        boost_signal_type signal;
        /// Whether Boost's signal may have a handler: until one is connected, sends skip it.
        std::atomic<bool> boost_used{false};
        std::atomic<bool> observed{false};  ///< whether an observer was ever connected
        std::shared_ptr<detail::ObserverList<Args...>> observers =
            std::make_shared<detail::ObserverList<Args...>>();
        mutex_type uid_mutex;  ///< guards connections_by_uid
        std::map<std::string, Connection, std::less<>> connections_by_uid;
    };

    /// Calls the handlers; with `errors`, every one, collecting what they throw (send_robust).
    static void call_handlers(CoreBase& base, std::vector<std::exception_ptr>* errors,
                              Args... args) {
        Core& core = static_cast<Core&>(base);
        if (core.observed.load(std::memory_order_acquire)) core.observers->call(args...);
        if (!core.boost_used.load(std::memory_order_acquire)) return;
        boost_signal_type& signal = core.signal;
        if (errors == nullptr) {
            signal(args...);
        } else {
            detail::RobustSinkScope scope(errors);
            signal(args...);
        }
    }
    static void destroy_core(CoreBase* base) noexcept { delete static_cast<Core*>(base); }
    static constexpr Ops core_ops{&call_handlers, &destroy_core};

    /// The Core, made by the first caller (two threads connecting at once make one).
    Core& core() {
        CoreBase* existing = core_.load(std::memory_order_acquire);
        if (existing == nullptr) {
            Core* made = new Core();
            made->ops = &core_ops;
            if (core_.compare_exchange_strong(existing, made, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
                existing = made;
            } else {
                delete made;  // another thread's Core came first
            }
        }
        return static_cast<Core&>(*existing);
    }
    /// The Core, for a caller about to connect to (or reach) Boost's signal: sends stop
    /// skipping it.
    Core& boost_core() {
        Core& core = this->core();
        core.boost_used.store(true, std::memory_order_release);
        return core;
    }
    Core* existing_core() const noexcept {
        return static_cast<Core*>(core_.load(std::memory_order_acquire));
    }

    template <class Handler>
    static constexpr void require_handler_shape() {
        static_assert(std::is_invocable_v<std::decay_t<Handler>&, Args...>,
                      "a handler must be callable with the signal's arguments, e.g. "
                      "(const Sender&, const Message&, bool fail_flag)");
    }

    static boost::signals2::connect_position at(Position position) noexcept {
        return position == Position::front ? boost::signals2::at_front : boost::signals2::at_back;
    }

    // A template, so that naming it does not make Boost's signal class complete (and compiled)
    // wherever this class is.
    template <class Boost = boost_signal_type>
    using slot_type = typename Boost::slot_type;

    std::atomic<CoreBase*> core_{nullptr};
};

/// The signal shape of `sendgrid_email_sent`: handlers are
/// `void(const Sender& sender, const Message& message, bool fail_flag)`.
template <class Sender, class Message, class ThreadingPolicy>
class Signal : public BasicSignal<void(const Sender&, const Message&, bool), ThreadingPolicy> {};

/// Sent once for every message handed to `SendgridBackend::send_messages`, after its final
/// attempt, on the sending thread. `fail_flag` is false only when SendGrid accepted the message;
/// the outcome (status, message id, errors) is recorded on the message before the signal fires.
/// One instance per process, as `sendgrid_backend.signals.sendgrid_email_sent` in Python.
inline Signal<SendgridBackend, EmailMessage> sendgrid_email_sent;

/// Sent for each message before its payload is built, on the sending thread. Handlers may edit
/// the message, or throw `CancelSend` to stop it (it is then emitted on `sendgrid_email_sent`
/// with fail_flag true and the reason recorded). Any other exception cancels it the same way.
inline BasicSignal<void(const SendgridBackend&, EmailMessage&)> sendgrid_pre_send;

SENDGRID_BACKEND_NAMESPACE_END
