#!/usr/bin/env bash
# Data-parallel runs on make-tiny's world, Gloo over 127.0.0.1, 2 processes (docs/distributed.md):
# - the caches filled in shares, byte-identical to one process's;
# - train and learn on 2 ranks (deltatrain launch) equal the 1-process run with the same global batch
#   within fp32 reduction-order rounding: every step's loss and gradient norm within 1e-5 relative,
#   every LoRA tensor within 1e-3 of its largest magnitude (measured: 6e-5 after 8 train steps,
#   2.3e-4 after 12 learn steps; one process's own regrouping of the same batch — 3 accumulated
#   micro-batches of 1 item against 1 batch of 3 — differs by 2e-4);
# - record on 2 ranks writes a store byte-identical to the 1-process store, killed on one rank and
#   resumed too;
# - torchrun's own launcher (Debian's python3-torch) starts the same run with the same result, and so
#   do two `deltatrain launch --nnodes 2` started as two machines would start them;
# - a rank killed mid-run stops the other with one line naming it, and --resume ends bitwise equal
#   to an uninterrupted 2-rank run (dropout on: every rank's generator state is checkpointed);
# - ranks with different configs, a command that runs in one process, and bad launch flags are refused.
# usage: distributed_test.sh DELTATRAIN SHARED_DIR
set -euo pipefail
bin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export DT_THREADS=1
cd "$dir"

"$bin" make-tiny --out world --images 6 > /dev/null
"$bin" train world/train.toml --set train.epochs=2 > /dev/null  # the teacher LoRA transfer.toml names

free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# compare A B: the LoRA tensors within 1e-3 of each tensor's largest magnitude; with a third
# argument, also every step's loss and gradient norm of the two metrics files within 1e-5.
compare() {
  /usr/bin/python3 - "$@" <<'PY'
import json, struct, sys
import numpy as np
def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n]); header.pop("__metadata__", None)
    return {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32)
            for k, v in header.items()}
a, b = tensors(sys.argv[1] + "/lora.safetensors"), tensors(sys.argv[2] + "/lora.safetensors")
assert a.keys() == b.keys(), "different tensor names"
worst = max(float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-30)) for k in a)
assert worst < 1e-3, f"LoRA tensors differ by {worst:.2e} of their magnitude"
if len(sys.argv) > 3:
    rows = [[json.loads(l) for l in open(p + "/metrics.jsonl")] for p in sys.argv[1:3]]
    assert len(rows[0]) == len(rows[1]), "different step counts"
    for x, y in zip(*rows):
        for key in ("loss", "grad_norm"):
            assert abs(x[key] - y[key]) <= 1e-5 * abs(x[key]), f"step {x['step']}: {key} {x[key]} against {y[key]}"
print(f"within {worst:.1e}")
PY
}

# caches: each rank encodes its share (3 of the 6 latents, 7 of the 13 captions on rank 0), the
# entries the bytes one process writes.
"$bin" cache world/train.toml --set data.cache_dir=cache1 > cache1.log
"$bin" launch --nproc-per-node 2 -- cache world/train.toml --set data.cache_dir=cache2 > cache2.log
grep -q "latents: 3 computed here" cache2.log && grep -q "text: 7 computed here" cache2.log ||
  { echo "rank 0 did not encode half of the cache"; cat cache2.log; exit 1; }
diff -r world/cache1 world/cache2 > /dev/null || { echo "the 2-rank cache differs from the 1-process cache"; exit 1; }
echo "cache, 2 ranks: each encoded its share, entries byte-identical"

# train: a global batch of 3 items split 2 + 1.
train=(--set train.epochs=4 --set train.batch_size=3)
"$bin" train world/train.toml --run-dir one "${train[@]}" > one.log
"$bin" launch --nproc-per-node 2 -- train world/train.toml --run-dir two "${train[@]}" > two.log
grep -q "rank 0 of 2 (gloo" two.log || { echo "no rank line"; cat two.log; exit 1; }
echo -n "train, 2 ranks against 1 process: "; compare one two metrics

# torchrun's contract, by torchrun itself (its Python 3.11 build needs explicit --redirects / --tee).
torchrun --nproc_per_node 2 --master_port "$(free_port)" --redirects 1 --tee 1 --no_python \
  "$bin" train world/train.toml --run-dir torchrun "${train[@]}" > torchrun.log 2>&1 || { cat torchrun.log; exit 1; }
echo -n "train under torchrun against deltatrain launch: "; compare two torchrun metrics

# Two "nodes" of one rank each, as two machines would start them (here both on 127.0.0.1).
port=$(free_port)
for node in 0 1; do
  "$bin" launch --nnodes 2 --node-rank $node --master 127.0.0.1:$port --nproc-per-node 1 -- \
    train world/train.toml --run-dir nodes "${train[@]}" > "node$node.log" 2>&1 &
  pids[$node]=$!
done
for node in 0 1; do wait "${pids[$node]}" || { echo "node $node failed"; cat "node$node.log"; exit 1; }; done
grep -q "rank 0 of 2 (gloo" node0.log || { echo "no rank line on node 0"; cat node0.log; exit 1; }
echo -n "train on 2 nodes against 1 node of 2 ranks: "; compare two nodes metrics

# record: whole batches per rank, merged into the 1-process store's bytes; learn: items per rank.
transfer=(--set train.epochs=6 --set train.batch_size=2 --set transfer.exact=true --set transfer.learn_batch_size=3)
"$bin" transfer world/transfer.toml --run-dir t1 "${transfer[@]}" > t1.log
"$bin" launch --nproc-per-node 2 -- transfer world/transfer.toml --run-dir t2 "${transfer[@]}" > t2.log
cmp t1/deltas/records.bin t2/deltas/records.bin || { echo "the 2-rank store differs from the 1-process store"; exit 1; }
[ -z "$(ls t2/deltas | grep rank || true)" ] || { echo "shards left after the merge"; ls t2/deltas; exit 1; }
echo "record, 2 ranks: store byte-identical"
echo -n "learn, 2 ranks against 1 process: "; compare t1 t2 metrics

# learn over two passes keeps its priors: 2 ranks write them as record writes a store (whole
# batches per rank, merged), byte for byte the 1-process priors.
passes=("${transfer[@]}" --set transfer.learn_passes=2 --set "transfer.store=$PWD/t1/deltas")
"$bin" transfer learn world/transfer.toml --run-dir p1 "${passes[@]}" > p1.log
"$bin" launch --nproc-per-node 2 -- transfer learn world/transfer.toml --run-dir p2 "${passes[@]}" > p2.log
cmp p1/priors/records.bin p2/priors/records.bin || { echo "the 2-rank priors differ from the 1-process priors"; exit 1; }
echo "learn's kept priors, 2 ranks: byte-identical"
# (The LoRA only: over twice the steps the ranks' sums drift from one process's past the metrics'
# 1e-5, with S0 computed in every step as well: grad_norm within 1.2e-5.)
echo -n "learn over 2 passes, 2 ranks against 1 process: "; compare p1 p2

# A record with one rank killed: the other finishes its shard and then names the rank it waits
# for; resumed on 2 ranks, each continues its own shard, and the store is the 1-process one.
record=(--set train.epochs=40 --set train.batch_size=2)
"$bin" transfer record world/transfer.toml --run-dir r1 "${record[@]}" > r1.log
port=$(free_port)
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$bin" transfer record world/transfer.toml --run-dir r2 "${record[@]}" > "record$r.log" 2>&1 &
  pids[$r]=$!
done
shard=r2/deltas/records.rank1-of-2.bin
until [ -f $shard ] && [ "$(stat -c %s $shard)" -gt $(($(stat -c %s r1/deltas/records.bin) / 6)) ]; do
  kill -0 "${pids[1]}" 2> /dev/null || { echo "rank 1 ended before a third of its records"; cat record1.log; exit 1; }
  sleep 0.005
done
kill -9 "${pids[1]}"
wait "${pids[1]}" 2> /dev/null || true
if wait "${pids[0]}"; then echo "record rank 0 succeeded without rank 1"; exit 1; fi
grep -q "the wait for every rank's records failed: rank 1 (process ${pids[1]}) ended without a word" record0.log ||
  { echo "record rank 0 did not name rank 1:"; tail -2 record0.log; exit 1; }
"$bin" launch --nproc-per-node 2 -- transfer record world/transfer.toml --run-dir r2 "${record[@]}" --resume > r2.log
cmp r1/deltas/records.bin r2/deltas/records.bin || { echo "the resumed 2-rank store differs"; exit 1; }
echo "record, rank 1 killed and resumed: store byte-identical"

# A rank killed mid-run (started by hand, as srun would): the other says which, --resume completes.
long=(--set train.epochs=60 --set train.batch_size=3 --set train.checkpoint_every=1 --set lora.dropout=0.1)
"$bin" launch --nproc-per-node 2 -- train world/train.toml --run-dir reference "${long[@]}" > reference.log
port=$(free_port)
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$bin" train world/train.toml --run-dir killed "${long[@]}" > "rank$r.log" 2>&1 &
  pids[$r]=$!
done
until [ -f killed/metrics.jsonl ] && [ "$(wc -l < killed/metrics.jsonl)" -ge 30 ]; do
  kill -0 "${pids[0]}" 2> /dev/null || { echo "run ended before step 30"; cat rank0.log; exit 1; }
  sleep 0.01
done
kill -9 "${pids[1]}"
wait "${pids[1]}" 2> /dev/null || true
if wait "${pids[0]}"; then echo "rank 0 went on without rank 1"; exit 1; fi
grep -q "rank 0: error: the .* of step [0-9]*.* failed: rank 1 (process ${pids[1]}) ended without a word" rank0.log ||
  { echo "rank 0 did not name rank 1:"; tail -2 rank0.log; exit 1; }
[ "$(grep -c error rank0.log)" -eq 1 ] || { echo "more than one error line"; cat rank0.log; exit 1; }
"$bin" launch --nproc-per-node 2 -- train world/train.toml --run-dir killed "${long[@]}" --resume > resumed.log
cmp <(python3 -c 'import json,sys; [print(json.loads(l)["loss"]) for l in open(sys.argv[1])]' reference/metrics.jsonl) \
    <(python3 -c 'import json,sys; [print(json.loads(l)["loss"]) for l in open(sys.argv[1])]' killed/metrics.jsonl) ||
  { echo "the resumed run's losses differ"; exit 1; }
/usr/bin/python3 - reference/lora.safetensors killed/lora.safetensors <<'PY' || { echo "the resumed LoRA differs"; exit 1; }
import json, struct, sys
def tensors(path):
    data = open(path, "rb").read(); (n,) = struct.unpack("<Q", data[:8])
    h = json.loads(data[8:8 + n]); h.pop("__metadata__", None)
    return {k: data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
PY
echo "rank 1 killed: rank 0 named it; resumed LoRA identical"

# The launcher says which rank failed and exits with its status.
if "$bin" launch --nproc-per-node 2 -- train world/train.toml --run-dir bad --set train.optimizer=sgd > launch-bad.log 2>&1; then
  echo "a failing launch succeeded"; exit 1
fi
grep -q "deltatrain launch: rank [01] (process [0-9]*) exited with status 1" launch-bad.log || { cat launch-bad.log; exit 1; }

# Ranks that disagree on the config; a command that does not run data-parallel; bad flags.
port=$(free_port)
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$bin" train world/train.toml --run-dir differ --set train.seed=$((42 + r)) > "differ$r.log" 2>&1 &
  pids[$r]=$!
done
for r in 0 1; do if wait "${pids[$r]}"; then echo "rank $r ran with another rank's config"; exit 1; fi; done
grep -q "rank 1's command and config differs from rank 0's" differ0.log || { cat differ0.log; exit 1; }
if RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" sample world/base --prompt x --out x.png 2> sample.log; then
  echo "sample ran as a rank"; exit 1
fi
grep -q "runs in one process, but this one was started as one of several ranks" sample.log || { cat sample.log; exit 1; }
if "$bin" launch --nproc-per-node 2 --nnodes 2 -- train world/train.toml 2> nodes.log; then echo "2 nodes without --master"; exit 1; fi
grep -q "needs --master ADDR:PORT" nodes.log || { cat nodes.log; exit 1; }
if RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 "$bin" train world/train.toml 2> env.log; then echo "no MASTER_PORT accepted"; exit 1; fi
grep -q "MASTER_PORT is not set" env.log || { cat env.log; exit 1; }
echo "refusals: one line each"
