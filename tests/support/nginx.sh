#!/usr/bin/env bash
# A throwaway nginx on 127.0.0.1 that answers POST /v3/mail/send with 202 and an X-Message-Id
# (nginx's $request_id), and logs "<request_id> <status>" per request so that tests and
# benchmarks can count what reached the server.
#
#   nginx.sh start DIR [tls]   free port in DIR/port; with tls: HTTP/2 over TLS with a fresh
#                              self-signed certificate for 127.0.0.1 in DIR/cert.pem
#   nginx.sh stop DIR
set -euo pipefail

command=${1:?usage: nginx.sh start|stop DIR [tls]}
dir=${2:?usage: nginx.sh start|stop DIR [tls]}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

case "$command" in
start)
    mkdir -p "$dir/tmp"
    dir=$(cd "$dir" && pwd)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    listen="listen 127.0.0.1:$port;"
    tls=""
    if [ "${3:-}" = tls ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=127.0.0.1 \
            -addext subjectAltName=IP:127.0.0.1 2>/dev/null
        listen="listen 127.0.0.1:$port ssl http2;"
        tls="ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;"
    fi
    user=""
    [ "$(id -u)" -eq 0 ] && user="user root;"  # workers keep access to the temp dir
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
$user
error_log $dir/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    log_format counted '\$request_id \$status';
    access_log $dir/access.log counted;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        $listen
        $tls
        location = /v3/mail/send {
            add_header X-Message-Id \$request_id always;
            return 202;
        }
    }
}
EOF
    : >"$dir/access.log"
    "$nginx_bin" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null; then
            echo "$port" >"$dir/port"
            exit 0
        fi
        sleep 0.05
    done
    echo "nginx.sh: nginx did not start; see $dir/error.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/nginx.pid" ]; then
        kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
        for _ in $(seq 1 100); do
            [ -f "$dir/nginx.pid" ] || break
            sleep 0.05
        done
    fi
    ;;
*)
    echo "usage: nginx.sh start|stop DIR [tls]" >&2
    exit 2
    ;;
esac
