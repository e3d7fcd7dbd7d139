// The one Catch2 v2 main for every test executable, compiled once (v3 links Catch2WithMain).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
