#!/bin/sh
# compiled_elsewhere.sh OBJECT: OBJECT, a unit built with SENDGRID_BACKEND_SEPARATE_COMPILATION
# that sends (without compiled.hpp), calls the send path's entry points and compiles none of them
# nor what is behind them (the payload writer of the send path, delivery, the libcurl transport).
set -eu
symbols=$(nm -C "$1")
for entry in 'SendgridBackend::SendgridBackend(' 'SendgridBackend::send_messages(' \
    'detail::make_curl_transport('; do
    if ! printf '%s\n' "$symbols" | grep -F " U sendgrid_backend::v0::$entry" >/dev/null; then
        echo "FAILED: $1 does not call sendgrid_backend::$entry...)"
        exit 1
    fi
done
compiled=$(printf '%s\n' "$symbols" | grep -E ' [TtWw] ' |
    grep -E 'SendgridBackend::(SendgridBackend|emit_outcome)\(|send_messages\(sendgrid_backend::v0::EmailMessage\*|write_payload<sendgrid_backend::v0::detail::JsonTextSink>|Delivery::|CurlTransport::|detail::curl::' ||
    true)
if [ -n "$compiled" ]; then
    echo "FAILED: $1 compiles the send path itself:"
    printf '%s\n' "$compiled" | head -n 10
    exit 1
fi
echo "$1: calls the send path, compiles none of it"
