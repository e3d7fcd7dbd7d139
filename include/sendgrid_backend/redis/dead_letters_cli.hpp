#pragma once

/// @file
/// `sendgrid-worker dead`: the dead letters of a queue (redis/dead_letters.hpp) from the
/// command line. run_worker_cli (redis/worker_cli.hpp) hands it a command line that starts with
/// `dead`.
///
///   sendgrid-worker dead list [--count N]
///   sendgrid-worker dead show KEY
///   sendgrid-worker dead retry KEY [--i-know-it-may-duplicate]
///   sendgrid-worker dead drop KEY
///
/// each with the worker's --redis, --stream, --group and --status-prefix (SENDGRID_REDIS_URL as
/// the worker reads it). It needs no SendGrid settings and reads none: nothing it prints comes
/// from them. Exit status: 0 done, 1 no such dead letter, a refused retry, or Redis out of
/// reach, 2 a bad command line.

#include <time.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/programs/command_line.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/dead_letters.hpp"
#include "sendgrid_backend/redis/worker_cli.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

inline constexpr const char* dead_letters_usage =
    "usage: sendgrid-worker dead list [--count N]\n"
    "       sendgrid-worker dead show KEY\n"
    "       sendgrid-worker dead retry KEY [--i-know-it-may-duplicate]\n"
    "       sendgrid-worker dead drop KEY\n"
    "  each also takes --redis URL, --stream S, --group G, --status-prefix P: the queue's\n"
    "  names, as the worker takes them (default: SENDGRID_REDIS_URL, else\n"
    "  redis://127.0.0.1:6379)\n"
    "  list         the newest dead letters first, a line each: when (UTC), state, HTTP\n"
    "               status, key, reason (tab-separated)\n"
    "  --count N    how many to list, 1-10000 (default 20)\n"
    "  show KEY     one dead letter, and its message as JSON\n"
    "  retry KEY    queue it again under KEY, for a worker to send; one that ended unknown\n"
    "               only with --i-know-it-may-duplicate (SendGrid may have accepted it)\n"
    "  drop KEY     remove it (its status stays)\n"
    "Exit status: 0 done, 1 no such dead letter, a refused retry or Redis out of reach,\n"
    "2 a bad command line.\n";

inline constexpr std::int64_t dead_letters_max_count = 10'000;
static_assert(dead_letters_max_count == static_cast<std::int64_t>(RedisDeadLetters::max_list));

/// What `sendgrid-worker dead ...` asked for.
struct DeadLettersCommandLine {
    bool help = false;
    std::string action;  ///< list, show, retry or drop
    std::string key;
    std::size_t count = 20;
    bool allow_duplicate = false;
    WorkerCommandLine where;  ///< only its Redis URL and queue names are read
};

/// Parses the arguments after `dead` (argv[0] is "dead"); `env_redis_url` as for the worker.
/// @throws UsageError naming the flag or argument at fault.
inline DeadLettersCommandLine parse_dead_letters_command_line(int argc, const char* const* argv,
                                                              const char* env_redis_url) {
    DeadLettersCommandLine line;
    take_env_redis_url(line.where, env_redis_url);
    bool count_given = false;
    FlagReader args(argc, argv);
    while (args.next()) {
        const std::string_view flag = args.flag();
        if (read_queue_flag(args, flag, line.where)) {
            continue;
        } else if (flag == "--count") {
            line.count = static_cast<std::size_t>(
                args.number("a number of dead letters", 1, dead_letters_max_count));
            count_given = true;
        } else if (flag == "--i-know-it-may-duplicate") {
            args.no_value();
            line.allow_duplicate = true;
        } else if (flag.rfind("-", 0) != 0 && line.action.empty()) {
            line.action = std::string(flag);
        } else if (flag.rfind("-", 0) != 0 && line.key.empty() && line.action != "list") {
            if (flag.empty()) throw UsageError("dead " + line.action + ": KEY is empty");
            line.key = std::string(flag);
        } else {
            throw unknown_argument(flag);
        }
    }
    line.help = args.help();
    if (line.help) return line;
    if (line.action.empty()) {
        throw UsageError("dead needs a command: list, show KEY, retry KEY or drop KEY", true);
    }
    if (line.action != "list" && line.action != "show" && line.action != "retry" &&
        line.action != "drop") {
        throw UsageError("dead: unknown command " + quote_for_error(line.action) +
                             "; give list, show KEY, retry KEY or drop KEY",
                         true);
    }
    if (line.action != "list" && line.key.empty()) {
        throw UsageError("dead " + line.action + " needs the message's queue KEY", true);
    }
    if (count_given && line.action != "list") {
        throw UsageError("--count is for dead list, not dead " + line.action);
    }
    if (line.allow_duplicate && line.action != "retry") {
        throw UsageError("--i-know-it-may-duplicate is for dead retry, not dead " + line.action);
    }
    return line;
}

/// `text` for one line of a terminal: control characters (a line break, an escape) as '?'.
inline std::string printable_line(std::string_view text) {
    std::string line(text);
    for (char& c : line) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    return line;
}

/// Unix seconds as "2024-05-01T12:00:00Z".
inline std::string utc_time_text(std::int64_t unix_seconds) {
    const time_t seconds = static_cast<time_t>(unix_seconds);
    struct tm parts {};
    char text[32] = "?";
    if (gmtime_r(&seconds, &parts) != nullptr) {
        std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
    }
    return text;
}

/// The message as `show` prints it: its JSON indented, or as kept when it is not JSON (an
/// entry a worker could not read), each line printable.
inline std::string dead_letter_message_text(const std::string& message) {
    if (message.empty()) return "(none: its queue entry was gone when it was recorded)";
    const nlohmann::json json = nlohmann::json::parse(message, nullptr, false);
    if (json.is_discarded()) return printable_line(message);
    return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline int show_dead_letter(const RedisDeadLetters& dead, const std::string& key) {
    const auto letter = dead.show(key);
    if (!letter) {
        std::fprintf(stderr, "sendgrid-worker dead show: no dead letter under %s\n",
                     quote_for_error(key).c_str());
        return 1;
    }
    std::printf(
        "key: %s\nstate: %s\nreason: %s\nhttp_status: %d\nworker: %s\nrecorded: %s\n"
        "message:\n%s\n",
        printable_line(letter->key).c_str(), to_string(letter->state),
        printable_line(letter->reason).c_str(), letter->http_status,
        printable_line(letter->worker).c_str(), utc_time_text(letter->at).c_str(),
        dead_letter_message_text(letter->message).c_str());
    return 0;
}

inline int list_dead_letters(const RedisDeadLetters& dead, std::size_t count) {
    for (const DeadLetter& letter : dead.list(count)) {
        std::printf("%s\t%s\t%d\t%s\t%s\n", utc_time_text(letter.at).c_str(),
                    to_string(letter.state), letter.http_status, printable_line(letter.key).c_str(),
                    printable_line(letter.reason).c_str());
    }
    return 0;
}

inline int retry_dead_letter(RedisDeadLetters& dead, const std::string& key, bool allow_duplicate) {
    const DeadLetterRetry retried =
        dead.retry(key, allow_duplicate ? RetryUnknown::allow_duplicate : RetryUnknown::refuse);
    if (retried.requeued()) {
        std::printf("%s\n", printable_line(retried.explanation).c_str());
        return 0;
    }
    std::string why = retried.explanation;
    if (retried.outcome == DeadLetterRetry::Outcome::refused_unknown) {
        why = quote_for_error(key) +
              " ended unknown: SendGrid may have accepted it (a worker stopped while it may have "
              "been sending it), so sending it again may deliver it twice; not re-queued (add "
              "--i-know-it-may-duplicate to send it anyway)";
    }
    std::fprintf(stderr, "sendgrid-worker dead retry: %s\n", printable_line(why).c_str());
    return 1;
}

/// `sendgrid-worker dead ...`: argv[0] is "dead". Returns the exit status (see the file comment).
inline int run_dead_letters_cli(int argc, char** argv) {
    DeadLettersCommandLine line;
    RedisOptions redis_options;
    try {
        line = parse_dead_letters_command_line(argc, argv, std::getenv("SENDGRID_REDIS_URL"));
        if (line.help) {
            std::fputs(dead_letters_usage, stdout);
            return 0;
        }
        redis_options = worker_redis_options(line.where);
        line.where.queue.validate();
    } catch (const UsageError& error) {
        return report_usage_error("sendgrid-worker", error, dead_letters_usage);
    } catch (const ImproperlyConfigured& error) {
        return report_usage_error("sendgrid-worker", UsageError(without_id(error)),
                                  dead_letters_usage);
    }
    try {
        RedisDeadLetters dead(std::make_shared<RedisClient>(redis_options), line.where.queue);
        if (line.action == "list") return list_dead_letters(dead, line.count);
        if (line.action == "show") return show_dead_letter(dead, line.key);
        if (line.action == "retry") return retry_dead_letter(dead, line.key, line.allow_duplicate);
        if (dead.drop(line.key)) {
            std::printf("%s dropped\n", printable_line(quote_for_error(line.key)).c_str());
            return 0;
        }
        std::fprintf(stderr, "sendgrid-worker dead drop: no dead letter under %s\n",
                     quote_for_error(line.key).c_str());
        return 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "sendgrid-worker dead %s: %s\n", line.action.c_str(), error.what());
        return 1;
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
