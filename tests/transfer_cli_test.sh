#!/usr/bin/env bash
# `deltatrain transfer [record|learn]`: help for each step, and one-line errors before any model
# loads for a config without what the step needs or a run without a store.
# usage: transfer_cli_test.sh DELTATRAIN SHARED_DIR
set -uo pipefail
bin=$(realpath "$1")
source "$(dirname "$0")/cli_lib.sh"

for step in "" record learn; do
  run 0 transfer $step --help
  grep -q -- "--resume" "$out" || fail "transfer $step --help lacks --resume"
  grep -q -- "--run-dir" "$out" || fail "transfer $step --help lacks --run-dir"
  run 2 transfer $step
  one_line_error "transfer $step without a config" "CONFIG is required"
done
run 0 transfer learn --help
grep -q -- "--output" "$out" || fail "transfer learn --help lacks --output"

cat > "$tmp/run.toml" <<'TOML'
[model]
family = "zimage"
base = "no_such_base"
[transfer]
student = "no_such_turbo"
TOML
run 1 transfer record "$tmp/run.toml"
one_line_error "record without a teacher LoRA" "transfer.teacher_lora is not set"
run 1 transfer "$tmp/run.toml" --run-dir "$tmp/r"
one_line_error "transfer without a teacher LoRA" "transfer.teacher_lora is not set"
run 1 transfer learn "$tmp/run.toml" --run-dir "$tmp/r"
one_line_error "learn without a store" "no delta store here"
run 1 transfer learn "$tmp/run.toml" --set transfer.guidance=-1
one_line_error "negative guidance" "transfer.guidance must be positive"
run 1 transfer record "$tmp/run.toml" --set transfer.teacher_lora=x.safetensors --set transfer.store_dtype=fp8
one_line_error "unknown store dtype" "transfer.store_dtype 'fp8' is not one of bf16, fp32"
run 1 transfer learn "$tmp/run.toml" --set transfer.no_such_setting=1
one_line_error "unknown setting" "unknown setting 'transfer.no_such_setting'"
report
