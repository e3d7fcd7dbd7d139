#pragma once

/// @file
/// `SqliteStatusStore`: a `StatusStore` in a SQLite file, shared by the processes and threads of
/// one host. Link `sendgrid_backend::sqlite` (SQLite 3; Debian: libsqlite3-dev).
///
/// @code
/// sendgrid_backend::StatusTrackerOptions options;
/// options.store =
/// std::make_shared<sendgrid_backend::SqliteStatusStore>("/var/lib/shop/status.db"); auto statuses
/// = std::make_shared<sendgrid_backend::StatusTracker>(options);
/// @endcode
///
/// The file's tables (its data format; every process using the file must agree on it):
/// - `facts (key, target, fingerprint, body)`: the facts applied to each message's targets (a
///   recipient, or "" for the send);
/// - `messages (key, changed)`: when a fact was last applied to each message (Unix seconds);
/// - `counters (name, value)`: `applied`, the facts applied since the file was made.

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// A SQLite status store's file could not be opened, read or written. `what()` names the file
/// and gives SQLite's own message, e.g. `[sendgrid_backend.sqlite] SQLite database
/// '/var/lib/shop/status.db': cannot open it: unable to open database file`.
class SqliteError : public Error {
  public:
    explicit SqliteError(const std::string& what) : Error("sendgrid_backend.sqlite", what) {}
};

/// How a `SqliteStatusStore` uses its file.
struct SqliteStatusStoreOptions {
    /// How long a call waits for another connection (process or store) that holds the file's
    /// write lock before it throws: 0 (fail at once) to `max_duration`.
    std::chrono::milliseconds busy_timeout{10'000};
    /// A message's record and fingerprints are forgotten once this long has passed since a fact
    /// was last applied to it (as the Redis store's TTL): `read` no longer sees them, and the
    /// fact's copies count as new. Their rows are deleted by later `apply` calls, a few hundred
    /// a call, oldest first. 1 second to `max_duration`.
    std::chrono::seconds max_age = std::chrono::hours(24 * 30);
    /// The clock `max_age` is measured on; null: the real one.
    Clock* clock = nullptr;

    /// The longest either duration may be: a year.
    static constexpr std::chrono::seconds max_duration{366 * 24 * 3600};

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        detail::require_within("SqliteStatusStoreOptions::busy_timeout", busy_timeout,
                               std::chrono::milliseconds(0),
                               std::chrono::milliseconds(max_duration));
        detail::require_within("SqliteStatusStoreOptions::max_age", max_age,
                               std::chrono::seconds(1), max_duration);
    }
};

namespace detail {

/// The message of a failed call on `db`, prefixed with the file and what was being done.
[[noreturn]] inline void throw_sqlite(sqlite3* db, const std::string& path,
                                      const std::string& doing) {
    throw SqliteError("SQLite database '" + path + "': " + doing + ": " +
                      (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

/// A prepared statement, reset (its bindings cleared) by `Run`'s end, so that no statement
/// keeps a read transaction open between calls.
class SqliteStatement {
  public:
    SqliteStatement(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(&path) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
            sqlite3_finalize(raw);
            throw_sqlite(db, path, std::string("cannot prepare '") + sql + "'");
        }
        statement_.reset(raw);
    }

    /// One run of the statement: binds its parameters (1, 2, ...), steps it, resets it.
    class Run {
      public:
        template <class... Values>
        Run(SqliteStatement& owner, const Values&... values) : owner_(owner) {
            int index = 0;
            (bind(++index, values), ...);
        }
        Run(const Run&) = delete;
        Run& operator=(const Run&) = delete;
        ~Run() {
            sqlite3_reset(owner_.statement_.get());
            sqlite3_clear_bindings(owner_.statement_.get());
        }

        /// Steps to the next row; false when there is none.
        bool next() {
            const int status = sqlite3_step(owner_.statement_.get());
            if (status == SQLITE_ROW) return true;
            if (status == SQLITE_DONE) return false;
            owner_.fail("cannot run '" + std::string(sqlite3_sql(owner_.statement_.get())) + "'");
        }

        /// Runs a statement that returns no rows.
        void done() {
            while (next()) {
            }
        }

        std::string text(int column) const {
            sqlite3_stmt* statement = owner_.statement_.get();
            const auto* data = sqlite3_column_blob(statement, column);
            const int size = sqlite3_column_bytes(statement, column);
            if (data == nullptr) return {};
            return std::string(static_cast<const char*>(data), static_cast<std::size_t>(size));
        }

        std::int64_t integer(int column) const {
            return sqlite3_column_int64(owner_.statement_.get(), column);
        }

      private:
        void bind(int index, std::string_view text) {
            // SQLITE_TRANSIENT: SQLite copies it (bound values may be temporaries).
            check(sqlite3_bind_text64(owner_.statement_.get(), index,
                                      text.empty() ? "" : text.data(), text.size(),
                                      SQLITE_TRANSIENT, SQLITE_UTF8));
        }
        void bind(int index, const std::string& text) { bind(index, std::string_view(text)); }
        void bind(int index, std::int64_t value) {
            check(sqlite3_bind_int64(owner_.statement_.get(), index, value));
        }
        void check(int status) {
            if (status != SQLITE_OK) owner_.fail("cannot bind a value");
        }

        SqliteStatement& owner_;
    };

  private:
    [[noreturn]] void fail(const std::string& doing) { throw_sqlite(db_, *path_, doing); }

    struct Finalize {
        void operator()(sqlite3_stmt* statement) const noexcept { sqlite3_finalize(statement); }
    };

    sqlite3* db_;
    const std::string* path_;
    std::unique_ptr<sqlite3_stmt, Finalize> statement_;
};

/// The file's tables (see the file comment); made by the first store that opens the file.
inline constexpr const char* sqlite_status_schema = R"sql(
CREATE TABLE IF NOT EXISTS facts (
    key TEXT NOT NULL, target TEXT NOT NULL, fingerprint TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (key, target, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    key TEXT NOT NULL PRIMARY KEY, changed INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_change ON messages (changed);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('applied', 0);
)sql";

/// How many forgotten messages one `apply` deletes, at most: apply stays short, and a file
/// that was left alone for a while is cleaned up over the next calls.
inline constexpr int sqlite_prune_per_apply = 256;

}  // namespace detail

/// A `StatusStore` in a SQLite file. Several stores, in this process or others on the same
/// host, may use one file at once: each `apply` is one `BEGIN IMMEDIATE` transaction (facts are
/// applied once, whoever applies them), the file is in WAL mode (readers do not wait for the
/// writer), and a call that finds the file locked waits up to `busy_timeout`. Not for a file on
/// a network file system (SQLite's locks do not hold there); share statuses between hosts with
/// the Redis store. Thread-safe (one connection behind a lock). Forgets as `max_age` says.
class SqliteStatusStore : public StatusStore {
  public:
    /// Opens `path`, making the file and its tables when they are missing.
    /// @throws ImproperlyConfigured naming the option that is out of range; SqliteError (naming
    ///         the file, with SQLite's message) when the file cannot be opened or made, is not
    ///         a database, or stays locked longer than `busy_timeout`.
    explicit SqliteStatusStore(std::string path, SqliteStatusStoreOptions options = {})
        : path_(std::move(path)), options_(options) {
        options_.validate();
        if (options_.clock == nullptr) options_.clock = &system_clock();
        sqlite3* raw = nullptr;
        const int status = sqlite3_open_v2(
            path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
            nullptr);
        db_.reset(raw);  // closed on every path, also when opening failed
        if (status != SQLITE_OK) detail::throw_sqlite(raw, path_, "cannot open it");
        sqlite3_extended_result_codes(raw, 1);
        sqlite3_busy_timeout(raw, static_cast<int>(options_.busy_timeout.count()));
        set_up();
        prepare();
    }

    SqliteStatusStore(const SqliteStatusStore&) = delete;
    SqliteStatusStore& operator=(const SqliteStatusStore&) = delete;

    /// @throws SqliteError; nothing of the batch is applied then.
    AppliedFacts apply(const std::vector<PreparedFact>& facts) override {
        AppliedFacts result;
        if (facts.empty()) return result;
        const detail::TargetGroups groups = detail::target_groups(facts);
        result.applied.reserve(facts.size());
        result.before.resize(groups.first.size());
        std::lock_guard<std::mutex> lock(mutex_);
        Transaction transaction(*this, *begin_immediate_);
        const std::int64_t now = options_.clock->unix_now();
        const std::int64_t expired_at = now - options_.max_age.count();
        prune(expired_at);
        std::set<std::string_view> checked;  // keys whose age was looked at
        std::int64_t applied = 0;
        for (std::size_t i = 0; i < facts.size(); ++i) {
            const PreparedFact& fact = facts[i];
            if (checked.insert(fact.key).second && is_expired(fact.key, expired_at)) {
                forget(fact.key);
            }
            const std::size_t group = groups.of_fact[i];
            if (groups.first[group] == i) {  // the target's first fact: what it held before
                detail::SqliteStatement::Run run(*select_target_, fact.key, fact.target);
                while (run.next()) result.before[group].push_back(run.text(0));
            }
            detail::SqliteStatement::Run(*insert_fact_, fact.key, fact.target, fact.fingerprint,
                                         fact.body)
                .done();
            if (sqlite3_changes(db_.get()) == 0) {  // applied before
                result.applied.push_back(false);
                continue;
            }
            result.applied.push_back(true);
            detail::SqliteStatement::Run(*touch_, fact.key, now).done();
            ++applied;
        }
        if (applied != 0) detail::SqliteStatement::Run(*count_applied_, applied).done();
        transaction.commit();
        return result;
    }

    /// @throws SqliteError.
    std::optional<StatusRecord> read(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        Transaction transaction(*this, *begin_);  // one snapshot for both queries
        const std::int64_t expired_at = options_.clock->unix_now() - options_.max_age.count();
        if (is_expired(key, expired_at)) return std::nullopt;
        StatusRecord record;
        {
            detail::SqliteStatement::Run run(*select_facts_, key);
            while (run.next()) record[run.text(0)].push_back(run.text(1));
        }
        transaction.commit();
        if (record.empty()) return std::nullopt;
        return record;
    }

    /// @throws SqliteError.
    std::uint64_t applied_facts() override {
        std::lock_guard<std::mutex> lock(mutex_);
        detail::SqliteStatement::Run run(*select_applied_);
        return run.next() ? static_cast<std::uint64_t>(run.integer(0)) : 0;
    }

    const std::string& path() const noexcept { return path_; }

  private:
    struct Close {
        void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
    };

    /// A transaction, rolled back unless committed (an exception on the way).
    class Transaction {
      public:
        Transaction(SqliteStatusStore& store, detail::SqliteStatement& begin) : store_(store) {
            detail::SqliteStatement::Run(begin).done();
        }
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;
        void commit() {
            detail::SqliteStatement::Run(*store_.commit_).done();
            open_ = false;
        }
        ~Transaction() {
            if (open_) sqlite3_exec(store_.db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
        }

      private:
        SqliteStatusStore& store_;
        bool open_ = true;
    };

    void exec(const char* sql, const std::string& doing) {
        if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
            detail::throw_sqlite(db_.get(), path_, doing);
        }
    }

    /// WAL mode, then the tables. Switching to WAL takes the file's lock without waiting for
    /// it (SQLite calls no busy handler there), so a store opening while another one sets the
    /// file up tries again until `busy_timeout` has passed.
    void set_up() {
        const auto give_up = std::chrono::steady_clock::now() + options_.busy_timeout;
        for (;;) {
            const int status =
                sqlite3_exec(db_.get(), "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
            if (status == SQLITE_OK) break;
            if ((status & 0xff) != SQLITE_BUSY && (status & 0xff) != SQLITE_LOCKED) {
                detail::throw_sqlite(db_.get(), path_, "cannot switch it to WAL mode");
            }
            if (std::chrono::steady_clock::now() >= give_up) {
                detail::throw_sqlite(db_.get(), path_,
                                     "cannot switch it to WAL mode within busy_timeout");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        // 0.16 and older kept a record of fields per message: its tables are not read, and
        // leaving them unsaid would look like lost statuses.
        int old_tables = 0;
        const auto count = [](void* found, int, char**, char**) {
            ++*static_cast<int*>(found);
            return 0;
        };
        if (sqlite3_exec(db_.get(),
                         "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('records', 'fingerprints')",
                         count, &old_tables, nullptr) != SQLITE_OK) {
            detail::throw_sqlite(db_.get(), path_, "cannot list its tables");
        }
        if (old_tables != 0) {
            throw SqliteError("SQLite database '" + path_ +
                              "': it holds statuses in the format of sendgrid_backend 0.16 or "
                              "older (tables records and fingerprints), which this version does "
                              "not read; give the store a new file");
        }
        exec("BEGIN IMMEDIATE", "cannot lock it to make the status tables");
        if (sqlite3_exec(db_.get(), detail::sqlite_status_schema, nullptr, nullptr, nullptr) !=
            SQLITE_OK) {
            const std::string message = sqlite3_errmsg(db_.get());
            sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
            throw SqliteError("SQLite database '" + path_ +
                              "': cannot make the status tables: " + message);
        }
        exec("COMMIT", "cannot make the status tables");
    }

    void prepare() {
        auto make = [&](const char* sql) {
            return std::make_unique<detail::SqliteStatement>(db_.get(), path_, sql);
        };
        begin_immediate_ = make("BEGIN IMMEDIATE");
        begin_ = make("BEGIN");
        commit_ = make("COMMIT");
        insert_fact_ = make(
            "INSERT OR IGNORE INTO facts (key, target, fingerprint, body) VALUES (?1, ?2, ?3, ?4)");
        select_target_ = make("SELECT body FROM facts WHERE key = ?1 AND target = ?2");
        select_facts_ = make("SELECT target, body FROM facts WHERE key = ?1");
        select_changed_ = make("SELECT changed FROM messages WHERE key = ?1");
        touch_ = make("INSERT OR REPLACE INTO messages (key, changed) VALUES (?1, ?2)");
        forget_facts_ = make("DELETE FROM facts WHERE key = ?1");
        forget_message_ = make("DELETE FROM messages WHERE key = ?1");
        select_expired_ =
            make("SELECT key FROM messages WHERE changed <= ?1 ORDER BY changed LIMIT ?2");
        count_applied_ = make("UPDATE counters SET value = value + ?1 WHERE name = 'applied'");
        select_applied_ = make("SELECT value FROM counters WHERE name = 'applied'");
    }

    /// Whether `key`'s last fact is `max_age` old (false for a key with none).
    bool is_expired(const std::string& key, std::int64_t expired_at) {
        detail::SqliteStatement::Run run(*select_changed_, key);
        return run.next() && run.integer(0) <= expired_at;
    }

    void forget(const std::string& key) {
        detail::SqliteStatement::Run(*forget_facts_, key).done();
        detail::SqliteStatement::Run(*forget_message_, key).done();
    }

    /// Deletes the oldest forgotten messages, a bounded number of them.
    void prune(std::int64_t expired_at) {
        std::vector<std::string> keys;
        {
            detail::SqliteStatement::Run run(*select_expired_, expired_at,
                                             std::int64_t{detail::sqlite_prune_per_apply});
            while (run.next()) keys.push_back(run.text(0));
        }
        for (const std::string& key : keys) forget(key);
    }

    std::string path_;
    SqliteStatusStoreOptions options_;
    std::mutex mutex_;
    std::unique_ptr<sqlite3, Close> db_;
    // After db_: destroyed (finalized) before the connection is closed.
    std::unique_ptr<detail::SqliteStatement> begin_immediate_, begin_, commit_, insert_fact_,
        select_target_, select_facts_, select_changed_, touch_, forget_facts_, forget_message_,
        select_expired_, count_applied_, select_applied_;
};

SENDGRID_BACKEND_NAMESPACE_END
