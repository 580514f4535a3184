#!/usr/bin/env bash
# `deltatrain transfer` on make-tiny's world, killed with SIGKILL and resumed: a record killed in
# the middle ends with a store byte-identical to an uninterrupted one; a learn killed and resumed
# ends with a LoRA bitwise identical to an uninterrupted one. Also LoRA → LoRA at g = 1 from a fresh
# LoRA, checked on the recorded items; a corrupted store refused by learn; a complete store not
# reused for another teacher checkpoint.
# usage: transfer_resume_test.sh DELTATRAIN SHARED_DIR
set -euo pipefail
bin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export DT_THREADS=1

"$bin" make-tiny --out "$dir/world" --images 4 > /dev/null
"$bin" train "$dir/world/train.toml" --set train.epochs=2 > /dev/null
cfg="$dir/world/transfer.toml"
settings=(--set train.epochs=20 --set train.checkpoint_every=1 --set train.save_every=0 --set transfer.exact=true)

"$bin" transfer "$cfg" --run-dir "$dir/reference" "${settings[@]}" > "$dir/reference.log"
[ -f "$dir/reference/lora.safetensors" ] || { echo "no LoRA from transfer"; cat "$dir/reference.log"; exit 1; }
grep -q "free on its disk" "$dir/reference.log" || { echo "record did not report the disk space it needs"; exit 1; }

same_tensors() {  # tensors of two safetensors files, byte for byte (metadata aside)
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in header.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
sys.exit(0 if a == b else "tensors differ")
PY
}

# Record killed once a few records are in the store (somewhere inside a later record or batch).
size=$(stat -c %s "$dir/reference/deltas/records.bin")
run="$dir/killed_record"
"$bin" transfer record "$cfg" --run-dir "$run" "${settings[@]}" > "$run.log" 2>&1 &
pid=$!
until [ -f "$run/deltas/records.bin" ] && [ "$(stat -c %s "$run/deltas/records.bin")" -gt $((size / 3)) ]; do
  kill -0 "$pid" 2> /dev/null || { echo "record ended before the kill"; cat "$run.log"; exit 1; }
  sleep 0.02
done
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
if cmp -s "$run/deltas/records.bin" "$dir/reference/deltas/records.bin"; then echo "killed record already complete"; exit 1; fi
"$bin" transfer learn "$cfg" --run-dir "$run" "${settings[@]}" > "$run.learn.log" 2>&1 && { echo "learn accepted an incomplete store"; exit 1; }
grep -qE "truncated|incomplete" "$run.learn.log" || { echo "learn on a killed store:"; cat "$run.learn.log"; exit 1; }
"$bin" transfer record "$cfg" --run-dir "$run" "${settings[@]}" --resume > "$run.resume.log"
cmp "$run/deltas/records.bin" "$dir/reference/deltas/records.bin" || { echo "resumed store differs"; exit 1; }
cmp "$run/deltas/manifest.json" "$dir/reference/deltas/manifest.json" || { echo "resumed manifest differs"; exit 1; }
echo "record killed and resumed: store identical"

kill_after_step_3() {  # run folder, pid, log: SIGKILL once the run's metrics hold 3 steps
  until [ -f "$1/metrics.jsonl" ] && [ "$(wc -l < "$1/metrics.jsonl")" -ge 3 ]; do
    kill -0 "$2" 2> /dev/null || { echo "learn ended before the kill"; cat "$3"; exit 1; }
    sleep 0.02
  done
  kill -9 "$2"
  wait "$2" 2> /dev/null || true
}

# Learn (through the one-command transfer, which finds the store complete) killed after step 3.
"$bin" transfer learn "$cfg" --run-dir "$run" "${settings[@]}" > "$run.learn.log" 2>&1 &
kill_after_step_3 "$run" $! "$run.learn.log"
"$bin" transfer "$cfg" --run-dir "$run" "${settings[@]}" --resume > "$run.resume2.log"
grep -q "is complete" "$run.resume2.log" || { echo "resumed transfer did not skip the complete record"; exit 1; }
same_tensors "$dir/reference/lora.safetensors" "$run/lora.safetensors" || { echo "resumed learn: LoRA differs"; exit 1; }
echo "learn killed and resumed: LoRA identical"

# Learn over three passes keeps S0 in <run_dir>/priors (transfer.keep_prior): killed while the
# priors are written and again after learn's step 3, resumed each time, it ends with the LoRA of
# the uninterrupted run.
passes=(--set transfer.learn_passes=3 --set "transfer.store=$dir/reference/deltas")
"$bin" transfer learn "$cfg" --run-dir "$dir/passes" "${settings[@]}" "${passes[@]}" > "$dir/passes.log"
grep -q "^priors: S0 of every record" "$dir/passes.log" || { echo "learn over 3 passes kept no priors"; cat "$dir/passes.log"; exit 1; }
prun="$dir/passes_killed"
"$bin" transfer learn "$cfg" --run-dir "$prun" "${settings[@]}" "${passes[@]}" > "$prun.log" 2>&1 &
pid=$!
until [ -f "$prun/priors/records.bin" ]; do
  kill -0 "$pid" 2> /dev/null || { echo "learn ended before the priors were written"; cat "$prun.log"; exit 1; }
  sleep 0.005
done
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
"$bin" transfer learn "$cfg" --run-dir "$prun" "${settings[@]}" "${passes[@]}" --resume > "$prun.resume.log" 2>&1 &
kill_after_step_3 "$prun" $! "$prun.resume.log"
"$bin" transfer learn "$cfg" --run-dir "$prun" "${settings[@]}" "${passes[@]}" --resume > "$prun.resume2.log"
grep -q "are complete" "$prun.resume2.log" || { echo "resumed learn did not reuse the complete priors"; cat "$prun.resume2.log"; exit 1; }
same_tensors "$dir/passes/lora.safetensors" "$prun/lora.safetensors" || { echo "learn with kept priors, resumed: LoRA differs"; exit 1; }
echo "learn over 3 passes with kept priors killed twice and resumed: LoRA identical"
if "$bin" transfer learn "$cfg" --run-dir "$prun" "${settings[@]}" "${passes[@]}" --set transfer.student=base --resume > "$prun.swap.log" 2>&1; then
  echo "a resumed learn reused priors of another student"; exit 1
fi
grep -q "priors/manifest.json: the priors were computed on another student checkpoint" "$prun.swap.log" ||
  { echo "student swap:"; cat "$prun.swap.log"; exit 1; }

# LoRA → LoRA (no distillation: g = 1) from a fresh LoRA, writing --output, onto two students: the
# tiny Turbo (an independent random draw, so a rank-4 LoRA can reproduce δc only in part) and the
# Base itself (where the teacher's own LoRA is an exact solution). The world's learning rate of 1e-3
# overshoots on this store (its teacher LoRA took 4 optimizer steps): 3e-4 with a cosine decay.
l2l=(--set transfer.guidance=1 --set transfer.student_lora=fresh --set train.learning_rate=3e-4 --set 'train.lr_schedule="cosine"'
  --set transfer.learn_passes=4 --set "transfer.store=$dir/reference/deltas")
"$bin" transfer learn "$cfg" --run-dir "$dir/l2l-turbo" --output "$dir/l2l-turbo.safetensors" "${settings[@]}" "${l2l[@]}" > "$dir/l2l.log"
grep -q "g = 1," "$dir/l2l.log" && [ -f "$dir/l2l-turbo.safetensors" ] || { echo "LoRA to LoRA failed"; cat "$dir/l2l.log"; exit 1; }
"$bin" transfer learn "$cfg" --run-dir "$dir/l2l-base" --output "$dir/l2l-base.safetensors" "${settings[@]}" "${l2l[@]}" \
  --set transfer.student=base > "$dir/l2l.log" || { echo "LoRA to LoRA on the Base failed"; cat "$dir/l2l.log"; exit 1; }

# What those LoRA files do on every recorded item: a learn pass at learning rate 0 logs, per batch,
# transfer_error = ‖(S_lora − S0) − δc‖ / ‖δc‖ (g = 1) before any update. From a fresh LoRA it is 1.
transfer_error() {  # student, LoRA (file or "fresh") → mean transfer_error over every record
  local eval="$dir/eval-$1-$(basename "$2")"
  "$bin" transfer learn "$cfg" --run-dir "$eval" "${settings[@]}" --set transfer.guidance=1 --set "transfer.student=$1" \
    --set "transfer.student_lora=$2" --set "transfer.store=$dir/reference/deltas" --set train.learning_rate=0 \
    --set transfer.learn_passes=1 > "$eval.log" || { echo "evaluation of $2 failed"; cat "$eval.log"; exit 1; }
  /usr/bin/python3 - "$eval/metrics.jsonl" <<'PY'
import json, sys
errors = [json.loads(line)["transfer_error"] for line in open(sys.argv[1])]
print(f"{sum(errors) / len(errors):.4f}")
PY
}
fresh=$(transfer_error turbo fresh)
turbo=$(transfer_error turbo "$dir/l2l-turbo.safetensors")
base=$(transfer_error base "$dir/l2l-base.safetensors")
echo "LoRA → LoRA at g = 1, relative error of S_lora − S0 against δc on the recorded items: fresh $fresh, learned on the Turbo $turbo, on the Base $base"
/usr/bin/python3 -c "import sys; f, t, b = $fresh, $turbo, $base; sys.exit(0 if abs(f - 1) < 1e-3 and t < 0.97 and b < 0.3 else 1)" ||
  { echo "LoRA to LoRA did not approach δc"; exit 1; }

# A flipped byte in a record: learn refuses it naming the record.
/usr/bin/python3 - "$run/deltas/records.bin" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1; open(p, "wb").write(b)
PY
if "$bin" transfer learn "$cfg" "${settings[@]}" --run-dir "$dir/corrupt" --set "transfer.store=$run/deltas" > "$dir/c.log" 2>&1; then
  echo "learn accepted a corrupt store"; exit 1
fi
grep -q "corrupt (CRC mismatch)" "$dir/c.log" || { echo "corrupt store:"; cat "$dir/c.log"; exit 1; }

# A bf16 run records in fp32 unless told otherwise (transfer.record_dtype), and the manifest says so.
for record_dtype in fp32 model; do
  "$bin" transfer record "$cfg" --run-dir "$dir/bf16-$record_dtype" "${settings[@]}" --set 'model.dtype="bf16"' \
    --set "transfer.record_dtype=$record_dtype" > "$dir/bf16.log" || { cat "$dir/bf16.log"; exit 1; }
done
grep -q '"compute_dtype": "fp32"' "$dir/bf16-fp32/deltas/manifest.json" || { echo "record_dtype fp32 not in the manifest"; exit 1; }
grep -q '"compute_dtype": "bf16"' "$dir/bf16-model/deltas/manifest.json" || { echo "record_dtype model not in the manifest"; exit 1; }
if cmp -s "$dir/bf16-fp32/deltas/records.bin" "$dir/bf16-model/deltas/records.bin"; then
  echo "records computed in fp32 and in bf16 are the same bytes"; exit 1
fi

# Another Base under the same path: a complete store is not reused for it.
/usr/bin/python3 - "$dir/world/base/transformer/diffusion_pytorch_model.safetensors" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-3] ^= 1; open(p, "wb").write(b)
PY
if "$bin" transfer record "$cfg" --run-dir "$dir/reference" "${settings[@]}" --resume > "$dir/swap.log" 2>&1; then
  echo "record reused a complete store for another teacher"; cat "$dir/swap.log"; exit 1
fi
grep -q "the teacher model differs" "$dir/swap.log" || { echo "teacher swap:"; cat "$dir/swap.log"; exit 1; }
echo "all passed"
