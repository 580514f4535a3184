# Helpers for the command-line tests (sourced). run WANT_RC ARGS... runs the binary $bin with
# stdout in $out and stderr in $err; the checks count failures, report prints them and exits.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out err=$tmp/err failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

run() {
  local want=$1; shift
  "$bin" "$@" >"$out" 2>"$err"
  local rc=$?
  [ "$rc" = "$want" ] || fail "deltatrain $*: exit code $rc, expected $want; stderr: $(head -c 3000 "$err")"
}

# The user-mistake contract: exactly one line on stderr, from deltatrain, containing $2.
one_line_error() {
  local what=$1 expected=$2 lines
  lines=$(wc -l <"$err")
  [ "$lines" = 1 ] || fail "$what: stderr has $lines lines, expected 1: $(head -c 3000 "$err")"
  grep -q '^deltatrain' "$err" || fail "$what: stderr does not start with 'deltatrain': $(head -c 300 "$err")"
  grep -qF -- "$expected" "$err" || fail "$what: stderr lacks '$expected': $(head -c 300 "$err")"
}

report() {
  if [ "$failures" != 0 ]; then echo "$failures failure(s)"; exit 1; fi
  echo "all passed"
}
