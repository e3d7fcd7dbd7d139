#pragma once

/// @file
/// The library version. CMake reads these three macros, so this file is the only place the
/// version is written down (CHANGELOG.md names the same number).

#define SENDGRID_BACKEND_VERSION_MAJOR 0
#define SENDGRID_BACKEND_VERSION_MINOR 21
#define SENDGRID_BACKEND_VERSION_PATCH 0

#define SENDGRID_BACKEND_DETAIL_STRINGIFY2(x) #x
#define SENDGRID_BACKEND_DETAIL_STRINGIFY(x) SENDGRID_BACKEND_DETAIL_STRINGIFY2(x)

/// "MAJOR.MINOR.PATCH", e.g. for the User-Agent header.
#define SENDGRID_BACKEND_VERSION_STRING                               \
    SENDGRID_BACKEND_DETAIL_STRINGIFY(SENDGRID_BACKEND_VERSION_MAJOR) \
    "." SENDGRID_BACKEND_DETAIL_STRINGIFY(                            \
        SENDGRID_BACKEND_VERSION_MINOR) "." SENDGRID_BACKEND_DETAIL_STRINGIFY(SENDGRID_BACKEND_VERSION_PATCH)

/// A single number that grows with every release: MAJOR * 10000 + MINOR * 100 + PATCH.
#define SENDGRID_BACKEND_VERSION                                                     \
    (SENDGRID_BACKEND_VERSION_MAJOR * 10000 + SENDGRID_BACKEND_VERSION_MINOR * 100 + \
     SENDGRID_BACKEND_VERSION_PATCH)
