#pragma once

// A few lines of RAII over SQLite's C API for the examples: a database, prepared statements with
// positional parameters, and a transaction. Errors throw with SQLite's own message.

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace example {

/// A bound value: text, an integer, or NULL.
using Value = std::variant<std::nullptr_t, std::int64_t, std::string>;

class Statement {
  public:
    Statement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &statement_, nullptr) != SQLITE_OK) {
            throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db));
        }
    }
    ~Statement() { sqlite3_finalize(statement_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    /// Binds `values` to ?1, ?2, ... (after a reset) for the next run.
    Statement& bind(const std::vector<Value>& values) {
        sqlite3_reset(statement_);
        sqlite3_clear_bindings(statement_);
        for (std::size_t i = 0; i < values.size(); ++i) {
            const int index = static_cast<int>(i + 1);
            if (const auto* text = std::get_if<std::string>(&values[i])) {
                sqlite3_bind_text(statement_, index, text->c_str(), -1, SQLITE_TRANSIENT);
            } else if (const auto* number = std::get_if<std::int64_t>(&values[i])) {
                sqlite3_bind_int64(statement_, index, *number);
            } else {
                sqlite3_bind_null(statement_, index);
            }
        }
        return *this;
    }

    /// Runs a statement that returns no rows.
    void run() {
        if (sqlite3_step(statement_) != SQLITE_DONE) {
            throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db_));
        }
        sqlite3_reset(statement_);
    }

    /// The next row, false when there is none.
    bool next() {
        const int result = sqlite3_step(statement_);
        if (result == SQLITE_ROW) return true;
        if (result != SQLITE_DONE) {
            throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db_));
        }
        return false;
    }
    std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
    std::string text(int column) const {
        const auto* value = sqlite3_column_text(statement_, column);
        return value == nullptr ? "" : reinterpret_cast<const char*>(value);
    }

  private:
    sqlite3* db_;
    sqlite3_stmt* statement_ = nullptr;
};

class Database {
  public:
    explicit Database(const std::string& path) {
        if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
            std::string why = sqlite3_errmsg(db_);
            sqlite3_close(db_);
            throw std::runtime_error("sqlite open " + path + ": " + why);
        }
        sqlite3_busy_timeout(db_, 5000);
    }
    ~Database() { sqlite3_close(db_); }
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    void execute(const char* sql) {
        char* error = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
            std::string why = error != nullptr ? error : "unknown error";
            sqlite3_free(error);
            throw std::runtime_error("sqlite: " + why);
        }
    }

    /// The first column of the first row of `sql` with `values` bound, as an integer.
    std::int64_t count(const char* sql, const std::vector<Value>& values = {}) {
        Statement statement(db_, sql);
        statement.bind(values);
        return statement.next() ? statement.integer(0) : 0;
    }

    sqlite3* handle() const noexcept { return db_; }

  private:
    sqlite3* db_ = nullptr;
};

/// BEGIN on construction, COMMIT on commit(), ROLLBACK if destroyed before that.
class Transaction {
  public:
    explicit Transaction(Database& db) : db_(db) { db_.execute("BEGIN"); }
    ~Transaction() {
        if (!done_) {
            try {
                db_.execute("ROLLBACK");
            } catch (...) {
            }
        }
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit() {
        db_.execute("COMMIT");
        done_ = true;
    }

  private:
    Database& db_;
    bool done_ = false;
};

}  // namespace example
