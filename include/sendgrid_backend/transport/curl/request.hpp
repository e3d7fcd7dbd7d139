#pragma once

/// @file
/// One request on one libcurl easy handle: the options it sets, the callbacks that count its
/// writes and read its answer, the `HttpResponse` it ends as. Part of `transport/curl.hpp`.

#include <curl/curl.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/transport/curl/errors.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail::curl {

/// Answer bodies are kept up to this size; the rest is read and dropped (SendGrid's error
/// bodies are a few hundred bytes; a server must not make us hold gigabytes).
inline constexpr std::size_t max_answer_body_bytes = 1 << 20;

/// `input` gzip-compressed (RFC 1952), as `Content-Encoding: gzip` wants; nullopt when zlib
/// fails (the body is then sent as it is).
inline std::optional<std::string> gzip_compress(const std::string& input) {
    z_stream stream{};
    // 15 + 16: a gzip header instead of a zlib one.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        return std::nullopt;
    }
    std::string output(deflateBound(&stream, static_cast<uLong>(input.size())) + 32, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = reinterpret_cast<Bytef*>(output.data());
    stream.avail_out = static_cast<uInt>(output.size());
    const int result = deflate(&stream, Z_FINISH);
    deflateEnd(&stream);
    if (result != Z_STREAM_END) return std::nullopt;
    output.resize(stream.total_out);
    return output;
}

/// The proxy settings libcurl would read from the environment for requests to `url`.
struct ProxyEnvironment {
    std::string proxy;     ///< empty: none
    std::string no_proxy;  ///< hosts that go straight, as no_proxy lists them
};

/// Reads the environment as libcurl does before each request: no_proxy, then NO_PROXY; the
/// scheme's own variable (http_proxy only in lower case: a CGI program's Proxy: header may set
/// HTTP_PROXY), then all_proxy, then ALL_PROXY; an empty variable counts as unset.
inline ProxyEnvironment read_proxy_environment(std::string_view url) {
    auto first_set = [](std::initializer_list<const char*> names) {
        for (const char* name : names) {
            const char* value = std::getenv(name);
            if (value != nullptr && *value != '\0') return std::string(value);
        }
        return std::string();
    };
    const bool https = url.size() >= 6 && iequals(url.substr(0, 6), "https:");
    ProxyEnvironment environment;
    environment.no_proxy = first_set({"no_proxy", "NO_PROXY"});
    environment.proxy = https ? first_set({"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
                              : first_set({"http_proxy", "all_proxy", "ALL_PROXY"});
    return environment;
}

/// Why libcurl's URL parser will not take `url` as an http(s) endpoint, or empty.
inline std::string url_problem(const std::string& url) {
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> handle(curl_url(), &curl_url_cleanup);
    if (!handle) return "cannot be checked: libcurl is out of memory";
    const CURLUcode parsed = curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0);
    if (parsed != CURLUE_OK) {
        return std::string("is not a URL libcurl accepts (") + curl_url_strerror(parsed) + ")";
    }
    auto has = [&handle](CURLUPart part) {
        char* value = nullptr;
        const CURLUcode found = curl_url_get(handle.get(), part, &value, 0);
        curl_free(value);
        return found == CURLUE_OK;
    };
    char* scheme = nullptr;
    curl_url_get(handle.get(), CURLUPART_SCHEME, &scheme, 0);
    const std::string scheme_text = scheme != nullptr ? scheme : "";
    curl_free(scheme);
    if (scheme_text != "http" && scheme_text != "https") return "is not http(s) for libcurl";
    if (!has(CURLUPART_HOST)) return "has no host for libcurl";
    if (has(CURLUPART_USER)) return "holds user credentials for libcurl";
    if (has(CURLUPART_QUERY)) return "has a query for libcurl";
    if (has(CURLUPART_FRAGMENT)) return "has a fragment for libcurl";
    return "";
}

/// An easy handle and what was last set on it, so that a request like the one before sets
/// only what differs: libcurl parses a URL again each time it is set, and reads every header
/// of the list for every request.
struct Handle {
    CURL* easy = nullptr;
    std::string url;
    CURLU* parsed_url = nullptr;  ///< `url` parsed once, for CURLOPT_CURLU
    HttpHeaders headers;          ///< the request headers `header_list` was built from
    bool gzip = false;
    bool no_expect = false;  ///< whether `header_list` holds an empty Expect header
    curl_slist* header_list = nullptr;

    explicit Handle(CURL* handle) : easy(handle) {}
    ~Handle() {
        curl_easy_cleanup(easy);
        curl_url_cleanup(parsed_url);
        curl_slist_free_all(header_list);
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
};

/// One request's state; libcurl's callbacks write into it, so it never moves while in use.
struct Transfer {
    std::size_t tag = 0;
    std::unique_ptr<Handle> handle;  ///< taken from a pool until the request is done
    std::string gzipped;
    int prereq_calls = 0;  ///< times the request was about to be written
    bool refused_resend = false;
    int head_status = 0;  ///< the status line of the answer head being read
    bool head_complete = false;
    HttpResponse response;
    std::array<char, CURL_ERROR_SIZE> error{};

    CURL* easy() const noexcept { return handle->easy; }
};

// --- The callbacks: libcurl calls them with the transfer as user data. ----------------------

/// Called each time the request is about to be written to a connection. A second call is
/// libcurl re-sending it on a new connection after the first connection died with no
/// answer: the server may hold the whole request, so it is refused (at most once).
inline int on_prereq(void* user, char*, char*, int, int) {
    auto& transfer = *static_cast<Transfer*>(user);
    if (++transfer.prereq_calls > 1) {
        transfer.refused_resend = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/// Keeps the answer body up to `max_answer_body_bytes`.
inline std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    std::string& body = static_cast<Transfer*>(user)->response.body;
    const std::size_t n = size * count;
    if (body.size() < max_answer_body_bytes) {
        body.append(data, std::min(n, max_answer_body_bytes - body.size()));
    }
    return n;
}

/// A status line starts an answer head (an interim 1xx answer may have come first): what an
/// earlier head said is forgotten.
inline void start_head(Transfer& transfer, std::string_view status_line) {
    transfer.response.headers.clear();
    transfer.head_complete = false;
    transfer.head_status = 0;
    const std::size_t space = status_line.find(' ');
    if (space != std::string_view::npos) {
        const auto code = parse_decimal(status_line.substr(space + 1, 3), 3);
        if (code) transfer.head_status = static_cast<int>(*code);
    }
}

/// Keeps the header `line` ("Name: value\r\n") when delivery reads it.
inline void keep_delivery_header(HttpResponse& response, std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return;
    const auto name = trim(line.substr(0, colon));
    if (!delivery_reads_header(name)) return;
    const auto value = trim(line.substr(colon + 1));
    const auto end = value.find_last_not_of("\r\n");
    response.headers.emplace_back(
        std::string(name),
        std::string(end == std::string_view::npos ? std::string_view() : value.substr(0, end + 1)));
}

/// Reads the answer head line by line: the status, whether the blank line that ends the
/// head arrived, and only the headers delivery reads (`HttpResponse::headers` promises those).
inline std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto& transfer = *static_cast<Transfer*>(user);
    const std::string_view line(data, size * count);
    // Most lines are headers delivery does not read: their first byte is enough to skip them.
    const char first = line.empty() ? '\n' : line[0];
    const bool may_matter =
        first == 'H' || first == '\r' || first == '\n' || may_start_delivery_header(first);
    if (!may_matter) return line.size();
    if (line.rfind("HTTP/", 0) == 0) {
        start_head(transfer, line);
    } else if (line == "\r\n" || line == "\n") {
        transfer.head_complete = transfer.head_status >= 200;
    } else {
        keep_delivery_header(transfer.response, line);
    }
    return line.size();
}

/// Installs the callbacks on a new handle; `bind_transfer` points them at each request's
/// transfer.
inline void set_callbacks(CURL* easy) {
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, &on_prereq);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &on_header);
}

// --- Preparing a request: the steps of `prepare`. ---------------------------------------------

/// The bytes to send, and whether they are gzipped.
struct Body {
    const std::string* text;
    bool gzip;
};

/// The request's body, or its gzipped copy kept in the transfer when the body is at least
/// `gzip_min_bytes` (0: never) and zlib managed.
inline Body choose_body(Transfer& transfer, const HttpRequest& request,
                        std::size_t gzip_min_bytes) {
    if (gzip_min_bytes > 0 && request.body.size() >= gzip_min_bytes) {
        if (auto gzipped = gzip_compress(request.body)) {
            transfer.gzipped = std::move(*gzipped);
            return Body{&transfer.gzipped, true};
        }
    }
    return Body{&request.body, false};
}

/// Points the handle at `url` when it differs from the last one, with the proxy settings the
/// environment gives for it.
inline void set_url(Handle& handle, const std::string& url) {
    if (handle.url == url) return;
    handle.url = url;
    // Parsed once: given CURLOPT_URL, libcurl parses the text again for every request. A URL
    // the parser refuses goes in as text, so that the transfer fails with libcurl's own error.
    if (handle.parsed_url == nullptr) handle.parsed_url = curl_url();
    if (handle.parsed_url != nullptr &&
        curl_url_set(handle.parsed_url, CURLUPART_URL, handle.url.c_str(), 0) == CURLUE_OK) {
        curl_easy_setopt(handle.easy, CURLOPT_CURLU, handle.parsed_url);
    } else {
        curl_easy_setopt(handle.easy, CURLOPT_CURLU, nullptr);
        curl_easy_setopt(handle.easy, CURLOPT_URL, handle.url.c_str());
    }
    // Given no proxy options, libcurl reads the proxy variables again for every request; read
    // here, once per URL, they are given as options (libcurl copies them), empty meaning none.
    const ProxyEnvironment proxy = read_proxy_environment(handle.url);
    curl_easy_setopt(handle.easy, CURLOPT_PROXY, proxy.proxy.c_str());
    curl_easy_setopt(handle.easy, CURLOPT_NOPROXY, proxy.no_proxy.c_str());
}

/// Gives the handle the request's header list, built again only when something in it changed.
inline void set_headers(Handle& handle, const HttpRequest& request, const Body& body,
                        const std::string& user_agent) {
    // libcurl asks "Expect: 100-continue" (a round trip) before HTTP/1.1 bodies larger than
    // this; an empty Expect header stops it. It is added only for such bodies: libcurl works
    // through every header in the list for every request.
    constexpr std::size_t expect_threshold =
        LIBCURL_VERSION_NUM >= 0x074500 ? 1024 * 1024 : 1024;  // 1 MiB since 7.69
    const bool no_expect = body.text->size() > expect_threshold;
    if (handle.header_list != nullptr && handle.gzip == body.gzip &&
        handle.no_expect == no_expect && handle.headers == request.headers) {
        return;
    }
    curl_slist* list = nullptr;
    if (body.gzip) list = curl_slist_append(list, "Content-Encoding: gzip");
    for (const auto& [name, value] : request.headers) {
        list = curl_slist_append(list, (name + ": " + value).c_str());
    }
    // In the list rather than CURLOPT_USERAGENT, which libcurl formats anew for every request.
    if (!user_agent.empty() && find_header(request.headers, "User-Agent").empty()) {
        list = curl_slist_append(list, ("User-Agent: " + user_agent).c_str());
    }
    if (no_expect) list = curl_slist_append(list, "Expect:");
    curl_slist_free_all(handle.header_list);
    handle.header_list = list;
    handle.headers = request.headers;
    handle.gzip = body.gzip;
    handle.no_expect = no_expect;
    curl_easy_setopt(handle.easy, CURLOPT_HTTPHEADER, list);
}

/// Sets what belongs to this request alone: its method, its body and the transfer the
/// callbacks write into.
inline void bind_transfer(Transfer& transfer, const HttpRequest& request, const Body& body) {
    CURL* easy = transfer.easy();
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST,
                     request.method == "POST" ? nullptr : request.method.c_str());
    // Not copied by libcurl: the body lives in the request (or the transfer) until the end.
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.text->data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.text->size()));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error.data());
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, &transfer);
}

/// Points the transfer's handle at `request`. Handles are reused as they are: the options
/// every request shares were set when the handle was made (curl/pool.hpp), the URL and the
/// header list when they last changed, so only the per-request ones are set every time.
inline void prepare(Transfer& transfer, const HttpRequest& request,
                    const TransportOptions& options) {
    const Body body = choose_body(transfer, request, options.gzip_min_bytes);
    set_url(*transfer.handle, request.url);
    set_headers(*transfer.handle, request, body, options.user_agent);
    bind_transfer(transfer, request, body);
}

/// Leaves no pointer to a finished transfer in a handle going back to a pool (the URL and
/// header list belong to the handle and stay).
inline void unbind_transfer(CURL* easy) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, nullptr);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, nullptr);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, nullptr);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, nullptr);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, nullptr);
}

// --- Ending a request: the steps of `finish`. -------------------------------------------------

/// A complete answer head arrived: the server answered.
inline void record_answer(Transfer& transfer) {
    HttpResponse& response = transfer.response;
    long status = 0;
    curl_easy_getinfo(transfer.easy(), CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    response.request_sent = true;
}

/// libcurl reported success, but the connection closed inside the answer head: libcurl takes
/// that as the end of the head; without its blank line, it is not an answer.
inline void record_cut_head(Transfer& transfer) {
    HttpResponse& response = transfer.response;
    response.error = TransportError::bad_answer;
    response.status = 0;
    response.request_sent = true;
    response.error_message = "the connection closed inside the answer head";
    if (transfer.head_status != 0) {
        response.error_message +=
            " (its status line said " + std::to_string(transfer.head_status) + ")";
    }
}

/// libcurl failed with `code`: what kind of failure, and whether anything was written.
inline void record_failure(Transfer& transfer, CURLcode code) {
    HttpResponse& response = transfer.response;
    response.error = classify_error(code);
    // A complete answer head is the server's answer even if the body was cut short.
    response.status = transfer.head_complete ? transfer.head_status : 0;
    // Before the pre-request callback (DNS, connect, TLS handshake) nothing was written.
    response.request_sent = transfer.prereq_calls > 0;
    if (transfer.refused_resend) {
        response.error_message =
            "the connection closed after the request was written, before any answer; "
            "libcurl's re-send on a new connection was refused (at most once on the wire)";
    } else {
        response.error_message =
            transfer.error[0] != '\0' ? transfer.error.data() : curl_easy_strerror(code);
    }
}

/// Turns what libcurl returned, and what the callbacks saw, into the transfer's response.
inline void finish(Transfer& transfer, CURLcode code) {
    // A refused re-send was never written.
    transfer.response.requests_on_wire = transfer.prereq_calls - (transfer.refused_resend ? 1 : 0);
    if (code != CURLE_OK) {
        record_failure(transfer, code);
    } else if (transfer.head_complete) {
        record_answer(transfer);
    } else {
        record_cut_head(transfer);
    }
}

}  // namespace detail::curl
SENDGRID_BACKEND_NAMESPACE_END
