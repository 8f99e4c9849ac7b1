#!/bin/sh
# egressd confirmation hook (README "Hook examples"): allow the hosts a list file names,
# deny the rest. POSIX sh and sed only (no jq), so it runs in a minimal image.
#
# Reads questions, one JSON line each, on stdin (README "Confirmation hook"):
#   {"id":7,"host":"api.example.com","port":443,"protocol":"connect",...,"registrable_domain":"example.com",...}
# and writes one JSON answer line for each. With a process per question (the default)
# that is one line in, one line out; under `persistent: true` the same loop answers every
# question for the life of the process, naming each answer's id.
#
# The list is the first argument (else EGRESSD_ALLOWLIST, else /etc/egressd/allowlist.txt):
#   hook: { exec: ["/usr/local/share/egressd/hooks/allowlist.sh", "/etc/egressd/allowlist.txt"] }
# It is re-read for every question: one pattern per line, `#` starts a comment, egressd's
# grammar without ports:
#   example.com        that host only
#   *.example.com      its subdomains at any depth, not example.com itself
#   **.example.com     example.com and all its subdomains
#   192.0.2.7, ::1     an IP literal, as egressd writes it (IPv6 compressed, no brackets)
#
# Answers are remembered by egressd, so the script runs once per new destination, not
# once per request:
#   - allowed: `remember: ttl` for EGRESSD_ALLOWLIST_TTL seconds (default 3600), not
#     `always`: a line removed from the list stops allowing within that time, and no
#     decisions_file entry outlives the list. A `**.` pattern that names the question's
#     registrable domain is answered with `scope: domain`, so its sibling subdomains are
#     allowed from egressd's memory without asking again; `*.` (apex excluded) and exact
#     patterns answer for the host alone.
#   - denied: `remember: ttl` for EGRESSD_DENY_TTL seconds (default 60). A client that
#     retries in a loop then costs no process per attempt, and a host added to the list
#     is let through a minute later at most. egressd caps it at hook.deny_ttl anyway.
# A line that is not a pattern is skipped with a warning on stderr.

set -f  # patterns like *.example.com must not expand as file names
LC_ALL=C
export LC_ALL

list=${1:-${EGRESSD_ALLOWLIST:-/etc/egressd/allowlist.txt}}
allow_ttl=${EGRESSD_ALLOWLIST_TTL:-3600}
deny_ttl=${EGRESSD_DENY_TTL:-60}
case $allow_ttl in '' | *[!0-9]* | 0) allow_ttl=3600 ;; esac
case $deny_ttl in '' | *[!0-9]* | 0) deny_ttl=60 ;; esac

# The value of a JSON string member: canonical hosts and registrable domains hold only
# letters, digits and . - _ (and : for IPv6), so nothing in them needs unescaping, and a
# value with anything else does not match (empty result).
member() { # NAME LINE
  printf '%s\n' "$2" | sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([A-Za-z0-9._:-]*\)".*/\1/p'
}
number() { # NAME LINE
  printf '%s\n' "$2" | sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p'
}

# answer DECISION TTL SCOPE REASON ID: one JSON line. REASON is built from the host, the
# pattern and the list's path; quotes and backslashes are replaced so it stays one string.
answer() {
  # shellcheck disable=SC1003 # the backslash is meant: one of the two characters replaced
  reason=$(printf '%s' "$4" | tr '"\\' "''")
  idm=
  [ -n "$5" ] && idm="\"id\":$5,"
  printf '{%s"decision":"%s","remember":"ttl","ttl_seconds":%s,"scope":"%s","reason":"%s"}\n' \
    "$idm" "$1" "$2" "$3" "$reason"
}

# decide: judges $host (and $domain, its registrable domain); sets verdict (allow|deny),
# scope and why. The loop below reuses the positional parameters for each line's words.
decide() {
  verdict=deny scope=host why="$host is not in $list"
  if [ ! -r "$list" ]; then
    why="allowlist $list cannot be read"
    return
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    # shellcheck disable=SC2086 # split on blanks: the pattern is the one word left
    set -- $line
    [ $# -eq 0 ] && continue
    pat=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
    if [ $# -gt 1 ] || ! printf '%s\n' "$pat" | grep -Eq '^(\*\*?\.)?[a-z0-9._:-]+$'; then
      printf 'allowlist.sh: %s: not a pattern, skipped: %s\n' "$list" "$line" >&2
      continue
    fi
    case $pat in
      '**.'*)
        base=${pat#\*\*.}
        if [ "$host" = "$base" ] || [ "${host%."$base"}" != "$host" ]; then
          verdict=allow why="$host matches $pat in $list"
          [ "$base" = "$domain" ] && scope=domain
          return
        fi ;;
      '*.'*)
        base=${pat#\*.}
        if [ "${host%."$base"}" != "$host" ]; then
          verdict=allow why="$host matches $pat in $list"
          return
        fi ;;
      *)
        if [ "$host" = "$pat" ]; then
          verdict=allow why="$host is listed in $list"
          return
        fi ;;
    esac
  done <"$list"
}

answered=0
while IFS= read -r q || [ -n "$q" ]; do
  [ -z "$q" ] && continue
  host=$(member host "$q" | tr '[:upper:]' '[:lower:]')
  domain=$(member registrable_domain "$q")
  id=$(number id "$q")
  if [ -z "$host" ]; then
    answer deny "$deny_ttl" host "allowlist.sh: no host in the question" "$id"
  else
    decide
    if [ "$verdict" = allow ]; then
      answer allow "$allow_ttl" "$scope" "$why" "$id"
    else
      answer deny "$deny_ttl" host "$why" "$id"
    fi
  fi
  answered=$((answered + 1))
done

# No question at all (empty stdin): say so, and exit non-zero, which egressd reads as a
# denial should it ever happen.
if [ "$answered" -eq 0 ]; then
  echo "allowlist.sh: no question on stdin" >&2
  exit 1
fi
exit 0
