#pragma once

/// @file
/// What a failed libcurl transfer means to delivery: the CURLcode → TransportError mapping.
/// Part of `transport/curl.hpp`; include that.

#include <curl/curl.h>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/outcome.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail::curl {

/// What kind of failure a libcurl code is. Whether the request left the process is decided
/// separately, by the pre-request callback (curl/request.hpp).
inline TransportError classify_error(CURLcode code) noexcept {
    switch (code) {
        case CURLE_OK:
            return TransportError::none;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
            return TransportError::connection_failed;
        case CURLE_OPERATION_TIMEDOUT:
            return TransportError::timeout;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
            return TransportError::tls;
        case CURLE_SEND_ERROR:
            return TransportError::send_failed;
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SEND_FAIL_REWIND:     // libcurl wanted to re-send and could not rewind the body
        case CURLE_ABORTED_BY_CALLBACK:  // the pre-request callback refused a re-send
            return TransportError::receive_failed;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_UNSUPPORTED_PROTOCOL:  // also "HTTP/0.9 not allowed": garbage came back
        case CURLE_BAD_CONTENT_ENCODING:
            return TransportError::bad_answer;
        default:
            return TransportError::other;
    }
}

}  // namespace detail::curl
SENDGRID_BACKEND_NAMESPACE_END
