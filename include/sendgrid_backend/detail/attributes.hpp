#pragma once

/// @file
/// Marks a function whose unsigned arithmetic wraps around on purpose (a hash, a pseudo-random
/// mix), so that clang's -fsanitize=integer, which CI runs, reports every other wrap.

#if defined(__clang__)
#define SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE \
    __attribute__((no_sanitize("unsigned-integer-overflow", "unsigned-shift-base")))
#else
#define SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE
#endif
