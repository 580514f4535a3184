#!/usr/bin/env bash
# Every #include of a library source names its own layer or one below it (the table CMake builds
# the layer libraries from: build/layers.txt). Linking catches upward calls; this catches upward
# includes of headers that need no linking (types, inline functions). Tests and src/testing/ may
# include anything.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
table=$(dirname "$bin")/layers.txt
[ -f "$table" ] || { echo "no layer table $table (configure the build first)" >&2; exit 1; }

declare -A direct below
while IFS=: read -r layer deps; do
  [ -n "$layer" ] && direct[$layer]=$deps
done < "$table"
# The layers each layer may include: itself and everything its dependencies reach.
reach() {
  local out="$1" d
  for d in ${direct[$1]}; do out="$out $(reach "$d")"; done
  echo "$out"
}
for layer in "${!direct[@]}"; do below[$layer]=" $(reach "$layer" | tr ' ' '\n' | sort -u | tr '\n' ' ') "; done

bad=0
while IFS= read -r file; do
  layer=${file#"$root/src/"}; layer=${layer%%/*}
  [ -n "${below[$layer]:-}" ] || { echo "$file: folder '$layer' is not a layer in $table" >&2; bad=1; continue; }
  while IFS= read -r inc; do
    target=${inc%%/*}
    [ "$target" = testing ] && { echo "$file: includes $inc (test-only helpers)" >&2; bad=1; continue; }
    case "${below[$layer]}" in *" $target "*) ;; *) echo "$file: includes $inc, above its layer '$layer'" >&2; bad=1 ;; esac
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done < <(find "$root/src" -name '*.cc' -o -name '*.h' | grep -v -e '_test\.cc$' -e '_fuzz\.cc$' -e '/src/testing/' | sort)
[ $bad = 0 ] && echo "every include stays in its layer or below ($(wc -l < "$table") layers)"
exit $bad
