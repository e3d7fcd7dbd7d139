// The one unit of test_separate_compilation that compiles the send path (and libcurl's factory),
// as a program built with SENDGRID_BACKEND_SEPARATE_COMPILATION has.
#include <sendgrid_backend/compiled.hpp>
#include <sendgrid_backend/transport/curl.hpp>
