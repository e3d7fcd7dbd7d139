#pragma once

/// @file
/// Applying a fact's `FieldOp`s to a record held in memory: the in-process store does it under
/// its lock, the SQLite store inside a transaction. Redis' store does the same in Lua
/// (status/redis_store.hpp), and its client replays the facts Redis applied with this code for
/// their watched values; the conformance test holds the stores to the same results.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The integers a record holds: ±2^53, what Redis' Lua (doubles) holds exactly.
inline constexpr std::int64_t max_record_integer = std::int64_t{1} << 53;

/// A stored integer field; nullopt when it is missing or (written by something else) not an
/// integer within ±2^53.
inline std::optional<std::int64_t> record_integer(const StatusRecord& record,
                                                  const std::string& field) {
    auto found = record.find(field);
    if (found == record.end()) return std::nullopt;
    const std::string& text = found->second;
    const bool negative = !text.empty() && text[0] == '-';
    const auto magnitude = parse_decimal(std::string_view(text).substr(negative ? 1 : 0));
    if (!magnitude || *magnitude > max_record_integer) return std::nullopt;
    return negative ? -*magnitude : *magnitude;
}

/// `value` held within ±2^53: what a store takes an op's value past that range as.
constexpr std::int64_t bounded(std::int64_t value) noexcept {
    return value < -max_record_integer  ? -max_record_integer
           : value > max_record_integer ? max_record_integer
                                        : value;
}

/// The fields a pick's order lives in, after its group's name (FieldOp::Kind::pick).
inline constexpr const char* pick_parts[] = {".rank", ".time", ".tie"};

/// Applies every op of `fact` to `record` (the fact is known to be new) and reads its watched
/// fields before and after.
inline AppliedFact apply_ops(StatusRecord& record, const PreparedFact& fact) {
    AppliedFact result;
    result.applied = true;
    result.before.reserve(fact.watch.size());
    for (const std::string& field : fact.watch) {
        result.before.push_back(record_integer(record, field).value_or(0));
    }
    for (const FieldOp& op : fact.ops) {
        switch (op.kind) {
            case FieldOp::Kind::max: {
                auto stored = record_integer(record, op.field);
                const std::int64_t value = bounded(op.value);
                if (!stored || value > *stored) record[op.field] = std::to_string(value);
                break;
            }
            case FieldOp::Kind::min: {
                auto stored = record_integer(record, op.field);
                const std::int64_t value = bounded(op.value);
                if (!stored || value < *stored) record[op.field] = std::to_string(value);
                break;
            }
            case FieldOp::Kind::add:
                // Both within ±2^53: the sum cannot overflow, and is held within it again.
                record[op.field] = std::to_string(
                    bounded(record_integer(record, op.field).value_or(0) + bounded(op.value)));
                break;
            case FieldOp::Kind::pick: {
                bool greater = false;
                for (std::size_t i = 0; i < 3; ++i) {
                    auto stored = record_integer(record, op.field + pick_parts[i]);
                    if (!stored || bounded(op.order[i]) > *stored) {
                        greater = true;
                        break;
                    }
                    if (bounded(op.order[i]) < *stored) break;
                }
                if (!greater) break;
                for (std::size_t i = 0; i < 3; ++i) {
                    record[op.field + pick_parts[i]] = std::to_string(bounded(op.order[i]));
                }
                for (const auto& [field, value] : op.payload) record[field] = value;
                break;
            }
        }
    }
    result.after.reserve(fact.watch.size());
    for (const std::string& field : fact.watch) {
        result.after.push_back(record_integer(record, field).value_or(0));
    }
    return result;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
