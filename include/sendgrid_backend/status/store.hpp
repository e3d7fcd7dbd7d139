#pragma once

/// @file
/// Where statuses are kept: `StatusStore`, the one small interface behind the in-process, SQLite
/// and Redis stores. A store knows nothing of SendGrid: it keeps, per message key, a record of
/// named fields, and applies `PreparedFact`s to it, each fact at most once (by its fingerprint)
/// and atomically. The status rules (status/rules.hpp) turn sends, queue moves and webhook events
/// into facts; every operation a fact carries is a join (max, min, a counted add, a pick of the
/// greatest), so the record a store ends with depends on the set of facts it was given, not on
/// their order or number of copies. `StatusTracker` (status/tracker.hpp) puts the two together.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// One change a fact makes to a record's fields. Integers are kept as decimal text within ±2^53,
/// so that Redis' Lua (doubles) holds them exactly: a value past that is taken as ±2^53, a sum
/// is held within it, and a stored text past it reads as no integer.
struct FieldOp {
    enum class Kind {
        max,   ///< field = max(field, value); a missing field is taken as smaller than any value
        min,   ///< field = min(field, value); likewise
        add,   ///< field += value (a missing field is 0); a fact is applied once, so it is counted
               ///< once
        pick,  ///< the group whose `order` is greatest wins: see below
    };
    Kind kind = Kind::max;
    /// max, min, add: the field's name. pick: the group's name: its order lives in the fields
    /// `<field>.rank`, `<field>.time` and `<field>.tie`, and `payload` is written (every pair,
    /// empty texts included) only when `order` is greater, compared element by element, than
    /// the stored one, or there is none.
    std::string field;
    std::int64_t value = 0;
    std::array<std::int64_t, 3> order{};
    std::vector<std::pair<std::string, std::string>> payload;
};

/// One fact (a send's outcome, a queue move, a webhook event), ready for a store.
struct PreparedFact {
    std::string key;          ///< the message's tracking key: the record it goes to
    std::string fingerprint;  ///< equal for the same fact however often it comes; once per key
    std::vector<FieldOp> ops;
    /// Integer fields whose values before and after the fact are reported back (missing: 0).
    std::vector<std::string> watch;
};

/// What applying one fact did.
struct AppliedFact {
    bool applied = false;  ///< false: the fingerprint had been applied to this key before
    /// The watched fields' values before and after, in `watch` order; empty unless applied.
    std::vector<std::int64_t> before, after;
};

/// A record's fields, by name, as stored (integers as decimal text).
using StatusRecord = std::map<std::string, std::string>;

/// A store's contract, checked by one conformance test for every store (tests/test_status_stores):
/// - `apply` applies each fact, in the given order, at most once per (key, fingerprint), all of
///   a fact's ops or none (atomically, also against other processes sharing the store), and
///   says for each what it did;
/// - `read` returns every field of a key's record, nullopt when there is none;
/// - `applied_facts` counts the facts applied since the store began (shared stores: by anyone).
/// A store may forget old records (a bound, a time to live); it says how in its documentation.
/// Implementations are thread-safe.
class StatusStore {
  public:
    virtual ~StatusStore() = default;
    virtual std::vector<AppliedFact> apply(const std::vector<PreparedFact>& facts) = 0;
    virtual std::optional<StatusRecord> read(const std::string& key) = 0;
    virtual std::uint64_t applied_facts() = 0;
};

SENDGRID_BACKEND_NAMESPACE_END
