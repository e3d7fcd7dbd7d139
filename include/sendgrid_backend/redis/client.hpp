#pragma once

/// @file
/// A small, synchronous Redis client over hiredis, for the library's Redis parts (shared metrics,
/// the durable queue). Link `sendgrid_backend::redis` (hiredis).
///
/// Like delivery, it never runs a command twice on its own: when a connection breaks while a
/// command is under way, that command may or may not have run, so `RedisConnectionLost` is
/// thrown and the caller decides. Only the next command reconnects (with capped backoff).
///
/// @code
/// sendgrid_backend::RedisClient redis(sendgrid_backend::RedisOptions::from_url(
///     "redis://:secret@127.0.0.1:6379/2"));
/// redis.command({"HINCRBY", "counts", "sent", "1"});
/// @endcode

#include <hiredis/hiredis.h>

#include <pthread.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Redis could not be reached, or answered a command with an error.
class RedisError : public Error {
  public:
    explicit RedisError(const std::string& what) : Error("sendgrid_backend.redis", what) {}

  protected:
    RedisError(std::string id, const std::string& what) : Error(std::move(id), what) {}
};

/// The connection broke while a command was under way: it may or may not have run.
class RedisConnectionLost : public RedisError {
  public:
    explicit RedisConnectionLost(const std::string& what)
        : RedisError("sendgrid_backend.redis_connection_lost", what) {}
};

/// Where and how to connect.
struct RedisOptions {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string username;  ///< an ACL user (Redis 6+); empty: the default user
    std::string password;  ///< empty: no AUTH
    int database = 0;
    /// Connecting, and each command: more than 0, at most `max_wait`.
    std::chrono::milliseconds timeout{2'000};
    /// How long a command may keep trying to reconnect before it gives up: 0 to `max_wait`.
    std::chrono::milliseconds reconnect_for{10'000};

    /// The longest either duration may be: a day (the client adds them to the current time).
    static constexpr std::chrono::milliseconds max_wait = std::chrono::hours(24);

    /// `redis://[[username]:password@]host[:port][/database]`. `rediss://` (TLS) is refused:
    /// Debian 12's hiredis 0.14 has no TLS; put a TLS tunnel (stunnel) on loopback instead.
    /// @throws ImproperlyConfigured naming SENDGRID_REDIS_URL, without echoing a password.
    static RedisOptions from_url(std::string_view url);
};

/// One answer, copied out of hiredis's reply.
struct RedisValue {
    enum class Type { nil, integer, string, status, error, array };
    Type type = Type::nil;
    std::int64_t integer = 0;
    std::string text;  ///< string, status and error
    std::vector<RedisValue> elements;

    bool is_nil() const noexcept { return type == Type::nil; }
    bool is_error() const noexcept { return type == Type::error; }
};

namespace detail {

/// Whether `answer` is an error Redis starts with `code` (e.g. "NOSCRIPT", "LOADING").
inline bool is_redis_error(const RedisValue& answer, std::string_view code) noexcept {
    return answer.is_error() && std::string_view(answer.text).substr(0, code.size()) == code;
}

/// Holds SIGPIPE back from this thread while it talks to Redis: hiredis writes with write(),
/// which raises SIGPIPE on a connection the server closed, and by default that ends the process.
/// A SIGPIPE raised meanwhile is taken back before the thread's mask is restored (the write
/// itself fails with EPIPE, which the client reports).
class SigpipeHeldBack {
  public:
    SigpipeHeldBack() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
        held_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
    }
    ~SigpipeHeldBack() {
        if (!held_) return;
        sigset_t pending;
        sigemptyset(&pending);
        if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            const timespec now{0, 0};
            while (sigtimedwait(&pipe_, nullptr, &now) == -1 && errno == EINTR) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeHeldBack(const SigpipeHeldBack&) = delete;
    SigpipeHeldBack& operator=(const SigpipeHeldBack&) = delete;

  private:
    sigset_t pipe_{};  ///< SIGPIPE alone
    sigset_t old_{};
    bool was_pending_ = false;
    bool held_ = false;
};

[[noreturn]] inline void refuse_redis_url(const std::string& reason) {
    throw ImproperlyConfigured("SENDGRID_REDIS_URL", reason);
}

inline RedisValue copy_reply(const redisReply& reply) {
    RedisValue value;
    switch (reply.type) {
        case REDIS_REPLY_INTEGER:
            value.type = RedisValue::Type::integer;
            value.integer = reply.integer;
            break;
        case REDIS_REPLY_STRING:
            value.type = RedisValue::Type::string;
            value.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_STATUS:
            value.type = RedisValue::Type::status;
            value.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_ERROR:
            value.type = RedisValue::Type::error;
            value.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_ARRAY:
            value.type = RedisValue::Type::array;
            value.elements.reserve(reply.elements);
            for (std::size_t i = 0; i < reply.elements; ++i) {
                value.elements.push_back(copy_reply(*reply.element[i]));
            }
            break;
        default:
            value.type = RedisValue::Type::nil;
    }
    return value;
}

}  // namespace detail

inline RedisOptions RedisOptions::from_url(std::string_view url) {
    RedisOptions options;
    std::string_view rest;
    if (url.rfind("redis://", 0) == 0) {
        rest = url.substr(8);
    } else if (url.rfind("rediss://", 0) == 0) {
        detail::refuse_redis_url(
            "rediss:// (TLS) is not supported: Debian 12's hiredis 0.14 has no TLS; reach a TLS "
            "Redis through a local tunnel (stunnel) and use redis://127.0.0.1:<port>");
    } else {
        detail::refuse_redis_url("must start with redis://");
    }
    const std::size_t at = rest.rfind('@');
    if (at != std::string_view::npos) {
        const std::string_view credentials = rest.substr(0, at);
        rest = rest.substr(at + 1);
        const std::size_t colon = credentials.find(':');
        if (colon == std::string_view::npos) {
            options.password = std::string(credentials);  // redis://password@host
        } else {
            options.username = std::string(credentials.substr(0, colon));
            options.password = std::string(credentials.substr(colon + 1));
        }
    }
    const std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        const std::string_view database = rest.substr(slash + 1);
        if (!database.empty()) {
            const auto number = detail::parse_decimal(database, 5);
            if (!number || *number > 65535) {
                detail::refuse_redis_url("the database after '/' must be a number");
            }
            options.database = static_cast<int>(*number);
        }
    }
    const std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
        const auto port = detail::parse_decimal(authority.substr(colon + 1), 5);
        if (!port || *port < 1 || *port > 65535) {
            detail::refuse_redis_url("the port must be 1 to 65535");
        }
        options.port = static_cast<int>(*port);
        authority = authority.substr(0, colon);
    }
    if (authority.empty()) detail::refuse_redis_url("has no host");
    for (char c : authority) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '?' || c == '#') {
            detail::refuse_redis_url("has a character not allowed in a host");
        }
    }
    options.host = std::string(authority);
    return options;
}

/// Commands already written in Redis' protocol (RESP), one after the other: `count` of them in
/// `text` (detail::append_command writes one). What `RedisClient::pipeline_streamed` sends at a
/// time: a caller of many small commands writes them once, with no copy per command.
struct FormattedCommands {
    std::string_view text;
    std::size_t count = 0;
};

namespace detail {

/// Appends the head of a bulk argument of `size` bytes (its text and "\r\n" come next).
inline void append_bulk_head(std::string& out, std::size_t size) {
    out += '$';
    out += std::to_string(size);
    out += "\r\n";
}

/// Appends one bulk argument (binary-safe), head and text.
inline void append_bulk(std::string& out, std::string_view argument) {
    append_bulk_head(out, argument.size());
    out.append(argument.data(), argument.size());
    out += "\r\n";
}

/// Appends the head of a command of `count` arguments, its name included (the arguments come
/// next, each with append_bulk or append_bulk_head).
inline void append_array_head(std::string& out, std::size_t count) {
    out += '*';
    out += std::to_string(count);
    out += "\r\n";
}

/// Appends one command (binary-safe arguments) to `out`, in Redis' protocol.
inline void append_command(std::string& out, std::initializer_list<std::string_view> arguments) {
    append_array_head(out, arguments.size());
    for (const std::string_view argument : arguments) append_bulk(out, argument);
}

}  // namespace detail

/// A synchronous Redis connection; thread-safe (commands from several threads take turns on
/// the one connection). See the file comment.
class RedisClient {
  public:
    /// Connects at once, so that a wrong address or password shows at start-up.
    /// @throws ImproperlyConfigured naming the option when a port, database or duration is out
    ///         of range; RedisError when Redis cannot be reached or refuses the credentials.
    explicit RedisClient(RedisOptions options) : options_(std::move(options)) {
        check_options(options_);
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::SigpipeHeldBack held_back;
        connect_once();
    }

    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    /// Runs one command (binary-safe arguments) and returns its answer, an error answer
    /// included (`RedisValue::is_error`).
    /// @throws RedisConnectionLost when the connection broke while the command was under way;
    ///         RedisError when no connection could be made within `reconnect_for`.
    RedisValue command(const std::vector<std::string>& arguments) {
        return pipeline({arguments}).at(0);
    }

    /// Sends several commands at once and returns their answers in order (MULTI/EXEC included,
    /// for atomic groups).
    /// While Redis is loading its data after a restart it refuses every command with LOADING;
    /// none of them ran, so they are sent again (with backoff, within `reconnect_for`).
    std::vector<RedisValue> pipeline(const std::vector<std::vector<std::string>>& commands) {
        return run_with_retries(commands);
    }

    /// As `pipeline`, each command's arguments viewed where they are (nothing copied on the way
    /// to hiredis: a large script call need not be copied to put its head before it).
    std::vector<RedisValue> pipeline_views(
        const std::vector<std::vector<std::string_view>>& commands) {
        return run_with_retries(commands);
    }

    /// Sends commands made a group at a time by `next` (null: no more), each group (already in
    /// Redis' protocol) sent as soon as it is made, in one write, so that Redis works on one
    /// group while the next is made; the answers are read once all are sent, each handed to
    /// `answered` (if any) with its command's number as it is read, so that the caller can work
    /// on it while later ones are still under way. `next` and `answered` run under the client's
    /// lock: they must not use this client. Commands Redis refuses while loading its data are
    /// not sent again here (the caller has them).
    /// @throws as `pipeline`; RedisConnectionLost also when a send broke: the commands sent
    ///         may or may not have run. What `next` or `answered` throws, with the connection
    ///         closed (answers not read would be taken for another call's).
    std::vector<RedisValue> pipeline_streamed(
        const std::function<const FormattedCommands*()>& next,
        const std::function<void(std::size_t, const RedisValue&)>& answered = nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::SigpipeHeldBack held_back;
        ensure_connected();
        std::size_t sent = 0;
        try {
            while (const FormattedCommands* group = next()) {
                if (redisAppendFormattedCommand(context_.get(), group->text.data(),
                                                group->text.size()) != REDIS_OK) {
                    context_.reset();  // commands queued before must not go out with the next
                    throw RedisError("cannot queue Redis commands (out of memory)");
                }
                sent += group->count;
                int done = 0;
                while (done == 0) {
                    if (redisBufferWrite(context_.get(), &done) != REDIS_OK) {
                        const std::string why = context_->errstr;
                        context_.reset();
                        throw RedisConnectionLost(
                            "the connection to Redis broke while commands were sent (" + why +
                            "); they may or may not have run");
                    }
                }
            }
        } catch (const RedisConnectionLost&) {
            throw;
        } catch (const RedisError& error) {
            if (sent == 0) throw;
            throw RedisConnectionLost(std::string(error.what()) + ", after " +
                                      std::to_string(sent) +
                                      " commands were sent; they may or may not have run");
        } catch (...) {
            // Answers on the way would be read as another call's: the connection goes.
            context_.reset();
            throw;
        }
        return read_answers(sent, answered);
    }

    /// As `pipeline_streamed`, the groups made beforehand.
    std::vector<RedisValue> pipeline_formatted(const std::vector<FormattedCommands>& groups) {
        std::size_t next = 0;
        return pipeline_streamed([&]() -> const FormattedCommands* {
            return next < groups.size() ? &groups[next++] : nullptr;
        });
    }

    const RedisOptions& options() const noexcept { return options_; }

  private:
    template <class Commands>
    std::vector<RedisValue> run_with_retries(const Commands& commands) {
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::SigpipeHeldBack held_back;
        const auto give_up = std::chrono::steady_clock::now() + options_.reconnect_for;
        std::chrono::milliseconds wait{20};
        for (;;) {
            auto answers = run_pipeline(commands);
            if (!all_refused_while_loading(answers) ||
                std::chrono::steady_clock::now() + wait > give_up) {
                return answers;
            }
            std::this_thread::sleep_for(wait);
            wait = std::min(wait * 2, std::chrono::milliseconds(500));
        }
    }

    static void check_options(const RedisOptions& options) {
        detail::require_within("RedisOptions::port", options.port, 1, 65535);
        detail::require_within("RedisOptions::database", options.database, 0, 99'999);
        detail::require_within("RedisOptions::timeout", options.timeout,
                               std::chrono::milliseconds(1), RedisOptions::max_wait,
                               " (hiredis reads 0 as no limit)");
        detail::require_within("RedisOptions::reconnect_for", options.reconnect_for,
                               std::chrono::milliseconds(0), RedisOptions::max_wait);
    }

    using Context = std::unique_ptr<redisContext, decltype(&redisFree)>;

    static bool all_refused_while_loading(const std::vector<RedisValue>& answers) {
        if (answers.empty()) return false;
        for (const auto& answer : answers) {
            if (!detail::is_redis_error(answer, "LOADING")) return false;
        }
        return true;
    }

    template <class Commands>
    std::vector<RedisValue> run_pipeline(const Commands& commands) {
        ensure_connected();
        for (const auto& arguments : commands) append(arguments);
        return read_answers(commands.size());
    }

    /// Reads `count` answers (sending what is still buffered first).
    std::vector<RedisValue> read_answers(
        std::size_t count,
        const std::function<void(std::size_t, const RedisValue&)>& answered = nullptr) {
        std::vector<RedisValue> answers;
        try {
            answers.reserve(count);
            for (std::size_t i = 0; i < count; ++i) {
                void* raw = nullptr;
                if (redisGetReply(context_.get(), &raw) != REDIS_OK || raw == nullptr) {
                    throw RedisConnectionLost(
                        "the connection to Redis broke while a command was under way (" +
                        std::string(context_->errstr) + "); it may or may not have run");
                }
                std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(
                    static_cast<redisReply*>(raw), &freeReplyObject);
                answers.push_back(detail::copy_reply(*reply));
                if (answered) answered(i, answers.back());
            }
        } catch (...) {
            // Answers still on the way (after a broken read, a handler's exception or no
            // memory) would be read as another call's: the connection goes.
            context_.reset();
            throw;
        }
        return answers;
    }

    template <class Arguments>
    void append(const Arguments& arguments) {
        std::vector<const char*> pointers;
        std::vector<std::size_t> lengths;
        pointers.reserve(arguments.size());
        lengths.reserve(arguments.size());
        for (const auto& argument : arguments) {
            pointers.push_back(argument.data());
            lengths.push_back(argument.size());
        }
        if (redisAppendCommandArgv(context_.get(), static_cast<int>(arguments.size()),
                                   pointers.data(), lengths.data()) != REDIS_OK) {
            context_.reset();  // commands queued before it must not go out with the next one
            throw RedisError("cannot queue a Redis command (out of memory)");
        }
    }

    /// Reconnects with capped backoff until `reconnect_for` has passed.
    void ensure_connected() {
        if (context_) return;
        const auto give_up = std::chrono::steady_clock::now() + options_.reconnect_for;
        std::chrono::milliseconds wait{50};
        for (;;) {
            try {
                connect_once();
                return;
            } catch (const RedisError&) {
                if (std::chrono::steady_clock::now() + wait > give_up) throw;
            }
            std::this_thread::sleep_for(wait);
            wait = std::min(wait * 2, std::chrono::milliseconds(2'000));
        }
    }

    void connect_once() {
        const auto ms = options_.timeout.count();
        timeval timeout{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
        Context context(redisConnectWithTimeout(options_.host.c_str(), options_.port, timeout),
                        &redisFree);
        if (!context) throw RedisError("cannot allocate a Redis context");
        const std::string where = options_.host + ":" + std::to_string(options_.port);
        if (context->err != 0) {
            throw RedisError("cannot connect to Redis at " + where + ": " + context->errstr);
        }
        redisSetTimeout(context.get(), timeout);
        redisEnableKeepAlive(context.get());
        context_ = std::move(context);
        auto refuse = [&](const std::string& what) {
            context_.reset();
            throw RedisError(what);
        };
        if (!options_.password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!options_.username.empty()) auth.push_back(options_.username);
            auth.push_back(options_.password);
            append(auth);
            if (read_status() != "OK") refuse("Redis at " + where + " refused the credentials");
        }
        if (options_.database != 0) {
            append(std::vector<std::string>{"SELECT", std::to_string(options_.database)});
            if (read_status() != "OK") {
                refuse("Redis at " + where + " refused database " +
                       std::to_string(options_.database));
            }
        }
    }

    /// The status of the next answer; empty for anything else (the text is never shown: an
    /// AUTH error could quote what it was given).
    std::string read_status() {
        void* raw = nullptr;
        if (redisGetReply(context_.get(), &raw) != REDIS_OK || raw == nullptr) return "";
        std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(static_cast<redisReply*>(raw),
                                                                      &freeReplyObject);
        return reply->type == REDIS_REPLY_STATUS ? std::string(reply->str, reply->len) : "";
    }

    RedisOptions options_;
    std::mutex mutex_;
    Context context_{nullptr, &redisFree};
};

SENDGRID_BACKEND_NAMESPACE_END
