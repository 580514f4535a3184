#!/usr/bin/env bash
# `deltatrain world render | score` on the shipped shapes world: a Base dataset and a concept's, each
# image with its caption; the scorer reads every caption back from the PNG; bad input is one line.
# usage: world_cli_test.sh DELTATRAIN SHARED_DIR
set -uo pipefail
bin=$(realpath "$1")
source "$(dirname "$0")/cli_lib.sh"
world="$(dirname "$0")/../worlds/shapes.toml"

run 0 world render "$world" --out "$tmp/base" --images 12 --seed 5
[ "$(ls "$tmp/base"/*.png | wc -l)" = 12 ] && [ "$(ls "$tmp/base"/*.txt | wc -l)" = 12 ] || fail "render wrote $(ls "$tmp/base" | wc -l) files"
run 0 world render "$world" --out "$tmp/star" --concept zorbit --images 6
grep -q " zorbit " "$tmp/star/000000.txt" || fail "concept caption: $(cat "$tmp/star/000000.txt")"
run 0 world render "$world" --out "$tmp/again" --images 12 --seed 5
cmp -s "$tmp/base/000007.png" "$tmp/again/000007.png" || fail "the same seed rendered other pixels"

for set in base star; do
  run 0 world score "$world" "$tmp/$set"/*.png
  while IFS=$'\t' read -r path caption invalid; do
    want=$(cat "${path%.png}.txt")
    [ "$caption" = "$want" ] || fail "$path read back as '$caption', its caption is '$want'"
    awk -v v="${invalid#invalid }" 'BEGIN { exit !(v < 0.02) }' || fail "$path: $invalid of its pixels off a clean rendering"
  done < "$out"
done

run 1 world render "$world" --out "$tmp/x" --concept nosuch
one_line_error "unknown concept" "no concept with trigger 'nosuch'"
run 1 world render "$world" --out "$tmp/x" --set size=8
one_line_error "bad world" "size must be 16 to 1024 pixels"
run 1 world score "$world" "$tmp/nosuch.png"
one_line_error "missing image" "nosuch.png"
report
