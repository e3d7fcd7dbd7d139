#pragma once

/// @file
/// Function attributes the library uses, spelled once for GCC and clang.

/// Marks a function whose unsigned arithmetic wraps around on purpose (a hash, a pseudo-random
/// mix), so that clang's -fsanitize=integer, which CI runs, reports every other wrap.
#if defined(__clang__)
#define SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE \
    __attribute__((no_sanitize("unsigned-integer-overflow", "unsigned-shift-base")))
#else
#define SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE
#endif

/// Keeps a rarely taken slow path out of its caller, so that the fast path can be inlined.
#if defined(__GNUC__)
#define SENDGRID_BACKEND_DETAIL_NOINLINE __attribute__((noinline))
#else
#define SENDGRID_BACKEND_DETAIL_NOINLINE
#endif
