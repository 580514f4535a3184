#!/usr/bin/env bash
# Every hostile file of tests/data/hostile/ through `deltatrain inspect`: exit code 1, one line on
# stderr naming the file and the problem, nothing on stdout (and, in a sanitizer build, no report).
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cli_lib.sh"

cases=0
while IFS=$'\t' read -r name expected; do
  file=$here/data/hostile/$name
  run 1 inspect "$file"
  one_line_error "$name" "$file: "
  one_line_error "$name" "$expected"
  [ ! -s "$out" ] || fail "$name: printed on stdout: $(head -c 300 "$out")"
  cases=$((cases + 1))
done <"$here/data/hostile/expected.tsv"
[ "$cases" -ge 40 ] || fail "only $cases hostile files"
echo "$cases hostile files"
report
