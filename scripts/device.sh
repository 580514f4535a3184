#!/usr/bin/env bash
# deltatrain on a CUDA machine that has CMake, ninja, a compiler and Python's torch (its LibTorch) but
# none of our Debian libraries, in one command of under 9 minutes:
#
#   scripts/device.sh pack       here: .bundle/device.tar.xz (about 23 MB) = the unpacked library
#                                bundle (scripts/bundle.sh), shared/golden, and the diffusers tree of
#                                DIFFUSERS_SRC (without its pipelines) for the eager comparison
#   scripts/device.sh run OUT    there, with .bundle/device.tar.xz beside the working tree: builds the
#                                tests and benchmarks against the local CUDA LibTorch (all cores), runs
#                                the model, LoRA, trainer, transfer and sampler tests on the GPU
#                                (DT_TEST_DEVICE=cuda, testing/device.h states the tolerances), then
#                                the full-size benchmarks against PyTorch eager, and writes every log and
#                                OUT/results.md (the table for bench/RESULTS.md)
#
# Each stage has its own time limit and a failed stage does not stop the later ones: the results say
# what ran. Nothing is installed; everything lands in build-cuda/, .bundle/device/ and OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
pack=.bundle/device.tar.xz

case "${1:-}" in
  pack)
    set -e
    [ -d .bundle/root ] || { echo "scripts/device.sh: no .bundle/root (run scripts/bundle.sh download and unpack)" >&2; exit 1; }
    shared=${DT_SHARED:-../shared}
    [ -d "$shared/golden" ] || { echo "scripts/device.sh: no $shared/golden (set DT_SHARED)" >&2; exit 1; }
    diffusers=${DIFFUSERS_SRC:?set DIFFUSERS_SRC to a diffusers source tree (bench/eager_zimage.py)}
    [ -d "$diffusers/src/diffusers" ] || { echo "scripts/device.sh: $diffusers holds no src/diffusers" >&2; exit 1; }
    stage=$(mktemp -d)
    mkdir -p "$stage/device/shared"
    cp -a .bundle/root "$stage/device/root"
    cp -a "$shared/golden" "$stage/device/shared/golden"
    mkdir -p "$stage/device/diffusers/src"
    tar -C "$diffusers/src" --exclude=diffusers/pipelines -cf - diffusers | tar -C "$stage/device/diffusers/src" -xf -
    tar -C "$stage" -cf - device | xz -6 -T0 > "$pack.tmp"
    mv "$pack.tmp" "$pack"
    rm -rf "$stage"
    du -h "$pack"
    ;;
  run)
    out=${2:?usage: scripts/device.sh run OUT}
    mkdir -p "$out"
    out=$(realpath "$out")
    start=$SECONDS
    deadline=$((start + 525))  # every stage ends by then: the whole run stays under 9 minutes
    log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$out/device.log"; }
    status=()  # "stage: ok / failed (rc)" lines for results.md
    stage() {  # stage NAME LIMIT_S LOGFILE COMMAND...: at most LIMIT_S, and never past the deadline
      local name=$1 limit=$2 file=$3
      shift 3
      local left=$((deadline - SECONDS))
      if [ "$left" -lt 15 ]; then
        status+=("$name: skipped (no time left)")
        log "$name skipped"
        return 1
      fi
      [ "$limit" -gt "$left" ] && limit=$left
      log "$name ... (at most $limit s)"
      timeout "$limit" "$@" > "$out/$file" 2>&1
      local rc=$?
      status+=("$name: $([ $rc = 0 ] && echo ok || echo "failed (rc $rc$([ $rc = 124 ] && echo ', time limit'))") — $file")
      log "$name rc=$rc"
      return $rc
    }

    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; date -u; } > "$out/machine.txt" 2>&1
    [ -f "$pack" ] || { log "no $pack (run scripts/device.sh pack here first)"; exit 1; }
    if [ ! -d .bundle/device ]; then
      tar -C .bundle -xJf "$pack" 2>/dev/null ||
        python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$pack" .bundle
    fi
    torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
    python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' >> "$out/machine.txt"

    stage configure 120 configure.log cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$torch_prefix" -DDT_BUNDLE="$PWD/.bundle/device/root" -DDT_SHARED="$PWD/.bundle/device/shared" \
      -DCMAKE_CUDA_ARCHITECTURES=native || { log "configure failed"; }
    stage build 330 build.log ninja -C build-cuda -j "$(nproc)" deltatrain deltatrain_tests zimage_bench flux2_bench

    # The tests that honour DT_TEST_DEVICE (testing/device.h), fp32 without TF32 (the goldens with
    # TF32 run last, after the benchmarks).
    device_tests='ZImageGolden.*:ZImageModel.*:ZImageFamily.*:Flux2Golden.*:Flux2Model.*:Flux2Family.*:LoraGolden.*:Flux2LoraGolden.*:Sampler.*:Trainer.*:Transfer.*:Delta.*'
    export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS, for the bitwise resume tests
    DT_TEST_DEVICE=cuda stage tests 150 tests.log build-cuda/deltatrain_tests --gtest_filter="$device_tests"

    # Full-size training steps, bf16, LoRA rank 16, 1024² (4096 image tokens): deltatrain, then eager.
    full=(--full --device cuda --dtypes bf16 --repeats 3)
    stage zimage 90 zimage.txt build-cuda/zimage_bench "${full[@]}" --checkpointing off,on
    stage zimage-explicit 60 zimage-explicit.txt build-cuda/zimage_bench "${full[@]}" --checkpointing on --attention explicit
    stage eager 120 eager.txt env DIFFUSERS_SRC="$PWD/.bundle/device/diffusers" python3 bench/eager_zimage.py "${full[@]}" --checkpointing off,on
    stage zimage-offload 90 zimage-offload.txt build-cuda/zimage_bench "${full[@]}" --checkpointing on --offload 20
    stage klein9b 90 klein9b.txt build-cuda/flux2_bench --klein 9b --device cuda --dtypes bf16 --repeats 3 --checkpointing off,on
    DT_TEST_DEVICE=cuda DT_TEST_TF32=1 stage tests-tf32 40 tests-tf32.log \
      build-cuda/deltatrain_tests --gtest_filter='ZImageGolden.*:Flux2Golden.*:LoraGolden.*:Flux2LoraGolden.*'

    python3 - "$out" "${status[@]}" <<'PY'
import os, re, sys
out, status = sys.argv[1], sys.argv[2:]
def rows(name):
    p = os.path.join(out, name)
    got = {}
    if os.path.exists(p):
        for line in open(p):
            f = line.split()
            if len(f) == 9 and f[0] in ("fp32", "bf16"):
                got[(f[0], f[1], f[2], f[3])] = (float(f[4]), float(f[7]), float(f[8]))
    return got
machine = open(os.path.join(out, "machine.txt")).read().strip().replace("\n", "; ")
dt, eager = rows("zimage.txt"), rows("eager.txt")
lines = [f"Machine: {machine}", "", "Stages: " + "; ".join(status), "",
         "| pass (bf16, 1024², rank 16) | checkpointing | deltatrain s | eager s | deltatrain / eager | MFU (of measured GEMM) | peak GiB (dt / eager) |",
         "|---|---|---|---|---|---|---|"]
for key, (t, frac, peak) in sorted(dt.items()):
    e = eager.get(key)
    lines.append(f"| Z-Image {key[3]} ({key[1]}) | {key[2]} | {t:.3f} | {e[0] if e else float('nan'):.3f} | "
                 f"{t / e[0] if e else float('nan'):.2f} | {frac:.2f} | {peak:.1f} / {e[2] if e else float('nan'):.1f} |")
for name, label in (("zimage-explicit.txt", "Z-Image, explicit attention"), ("zimage-offload.txt", "Z-Image, 20 layers offloaded"),
                    ("klein9b.txt", "FLUX.2 klein 9B")):
    for key, (t, frac, peak) in sorted(rows(name).items()):
        lines.append(f"| {label} {key[3]} | {key[2]} | {t:.3f} | — | — | {frac:.2f} | {peak:.1f} |")
open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
    log "done in $((SECONDS - start)) s"
    ;;
  *)
    echo "usage: scripts/device.sh pack | run OUT" >&2
    exit 2
    ;;
esac
