#pragma once

// Debian 12 ships Catch2 v2.13; newer systems ship v3. The tests only use what both offer.
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
