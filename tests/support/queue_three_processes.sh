#!/usr/bin/env bash
# examples/14 as three processes against one Redis: "web" queues 6 sign-up mails (one to an
# address the worker's fake SendGrid refuses), a worker sends them, a third process reads the
# statuses and checks 5 accepted and 1 failed. Usage: queue_three_processes.sh PROGRAM REDIS_DIR
set -euo pipefail
program=$1
url=$(cat "$2/url")
queue="example14-test-$$"
keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
export SENDGRID_API_KEY=
"$program" web --redis "$url" --queue "$queue" --keys "$keys" --signups 6
# The web process is gone; the mail waits in Redis until a worker comes.
"$program" worker --redis "$url" --queue "$queue"
"$program" status --redis "$url" --queue "$queue" --keys "$keys" \
    --expect-accepted 5 --expect-failed 1
