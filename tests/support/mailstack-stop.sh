#!/bin/sh
# Stops one private mail stack started by tests/support/mailstack.rs and removes its directory.
#
#   sh tests/support/mailstack-stop.sh DIR
#
# Used in two places, so that there is one way to stop a stack:
# - the watchdog that MailStack starts runs it when the test process closes the watchdog's stdin
#   (MailStack dropped, or the test process exited however it ended);
# - scripts/test.sh runs it on any stack directory still present after `cargo test` (a bug).
#
# Postfix's master gets SIGTERM and is gone in tens of milliseconds. Dovecot's master, on
# SIGTERM, waits about a second for its log process; the stack is disposable, so its whole
# process group (the master's session: only Dovecot processes) gets SIGKILL at once. Then it waits
# until both masters are gone (a zombie counts as gone: in a container PID 1 may reap late),
# escalates to SIGKILL of the Postfix process group after 5 seconds, and removes DIR.
set -u

dir=${1:?usage: mailstack-stop.sh DIR}
case $dir in
  /*/mailstack-*) ;;
  *) echo "mailstack-stop.sh: refusing to touch $dir (not a mail stack directory)" >&2; exit 2 ;;
esac

alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# A pid file may outlive its process and the number may be reused: only signal a process whose
# name is the daemon's.
pids=""
for entry in postfix/spool/queue/pid/master.pid:master:TERM dovecot/run/master.pid:dovecot:KILL; do
  file=$dir/${entry%%:*}
  rest=${entry#*:}
  name=${rest%%:*}
  signal=${rest#*:}
  [ -r "$file" ] || continue
  pid=$(tr -cd '0-9\n' <"$file" | sed -n '/./{p;q;}')
  [ -n "$pid" ] || continue
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || continue
  if [ "$signal" = KILL ]; then
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  else
    kill -TERM "$pid" 2>/dev/null
  fi
  pids="$pids $pid"
done

tries=0
while [ "$tries" -lt 500 ]; do
  running=""
  for pid in $pids; do
    if alive "$pid"; then running="$running $pid"; fi
  done
  [ -n "$running" ] || break
  sleep 0.01
  tries=$((tries + 1))
done

status=0
for pid in $pids; do
  if alive "$pid"; then
    echo "mailstack-stop.sh: pid $pid ignored SIGTERM for 5s, killing its process group" >&2
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    status=1
  fi
done

rm -rf -- "$dir"
exit "$status"
