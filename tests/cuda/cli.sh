#!/bin/sh
# The cuda backend from the command line: --backend cuda where the driver,
# NVRTC or a device is missing (exit 2, naming what), nnc emit --stage
# cuda and ptx, and checkpoints across backends: a run trained on cuda-emu
# (the cuda backend's CUDA C on the CPU) evaluates on cpu as on cuda-emu,
# and a cpu run resumes on cuda-emu and back.
. "${0%/*}/../lib.sh"

# What is missing is said, with exit status 2, before any work.
if "$nnc" train --backend cuda models/mlp.nn --epochs 0 --out "$tmp/none" >"$tmp/gpu.log" 2>&1; then
  ok "a GPU is here: --backend cuda runs"
else
  status=$?
  if [ $status = 2 ] && grep -q "backend 'cuda' cannot run here: .*\(libcuda\|NVRTC\|nvrtc\|device\)" "$tmp/gpu.log"; then
    ok "--backend cuda without a GPU: exit 2, $(head -1 "$tmp/gpu.log" | cut -c1-100)"
  else
    bad "--backend cuda: status $status"; cat "$tmp/gpu.log"
  fi
fi
NNC_LIBCUDA=/nonexistent/libcuda.so.1 "$nnc" eval --backend cuda models/mlp.nn >"$tmp/lib.log" 2>&1
status=$?
[ $status = 2 ] && grep -q "/nonexistent/libcuda.so.1" "$tmp/lib.log" \
  && ok "NNC_LIBCUDA naming a missing library: exit 2, the path named" || { bad "NNC_LIBCUDA: status $status"; cat "$tmp/lib.log"; }
expect 2 "unknown backend 'cudda'.*did you mean 'cuda'" train --backend cudda models/mlp.nn

# The CUDA C: each kernel with its .nn lines, and the launch plan.
expect 0 "" emit --stage cuda --entry train --batch 5 models/cnn.nn -o "$tmp/cnn.cu"
grep -q "^NNC_KERNEL void k0_" "$tmp/cnn.cu" && grep -q "^//   from models/cnn.nn:[0-9]" "$tmp/cnn.cu" \
  && grep -q "^// The launches, in order" "$tmp/cnn.cu" \
  && ok "emit --stage cuda: kernels, their .nn lines, the launches" || { bad "emit --stage cuda"; head -40 "$tmp/cnn.cu"; }
"$nnc" emit --stage kernels --entry train --batch 5 models/cnn.nn -o "$tmp/cnn.kir" \
  && "$nnc" emit --stage cuda "$tmp/cnn.kir" -o "$tmp/kir.cu" && grep -v '^//' "$tmp/cnn.cu" >"$tmp/a" \
  && grep -v '^//' "$tmp/kir.cu" >"$tmp/b" && cmp -s "$tmp/a" "$tmp/b" \
  && ok "a program read back from kernel IR text gives the same CUDA C" || bad "emit --stage cuda FILE.kir"
# A convolution's columns are the batch's pixels: at batch 8192, cnn's first
# has 86528 tiles of them, past the 65535 of a grid's y.
expect 0 "" emit --stage cuda --entry train --batch 8192 models/cnn.nn -o "$tmp/big.cu"
# An edited kernel IR text: checked as the LLVM backend checks it, never
# written as code that reads outside its buffers.
"$nnc" emit --stage kernels --entry train models/mlp.nn -o "$tmp/mlp.kir"
sed 's/    v0 = load %4\[512\*i0 + 1\*i1\]/    v0 = load %4[512*i0 + 1*i1 + 100000000]/' "$tmp/mlp.kir" >"$tmp/far.kir"
sed 's/, K = 784$/, K = 9999999999/' "$tmp/mlp.kir" >"$tmp/deep.kir"
cmp -s "$tmp/mlp.kir" "$tmp/far.kir" && bad "the load to edit was not found in mlp.kir"
expect 1 "kernel 'linear_1 + relu_1': a load of %4 reaches elements 100000000" emit --stage cuda "$tmp/far.kir"
expect 1 "GEMM operand A needs" emit --stage cuda "$tmp/deep.kir"
expect 2 "--arch applies to --stage ptx" emit --stage cuda --arch sm_80 models/mlp.nn
expect 2 "--arch needs a GPU architecture" emit --stage ptx --arch 80 models/mlp.nn
expect 2 "unknown stage 'cu'" emit --stage cu models/mlp.nn

# The PTX, with the same comments above each .entry (where NVRTC is).
if "$nnc" emit --stage ptx --arch sm_90 --entry train models/mlp.nn -o "$tmp/mlp.ptx" 2>"$tmp/ptx.log"; then
  grep -q "^\.target sm_90" "$tmp/mlp.ptx" && grep -B1 "\.entry k0_" "$tmp/mlp.ptx" | grep -q "^//   from models/mlp.nn:" \
    && ok "emit --stage ptx: sm_90, each .entry under its .nn lines" || { bad "emit --stage ptx"; head -30 "$tmp/mlp.ptx"; }
else
  grep -q "nvrtc" "$tmp/ptx.log" && ok "emit --stage ptx without NVRTC says so" || { bad "emit --stage ptx"; cat "$tmp/ptx.log"; }
fi

# No NVRTC, or one that does not know --arch, is exit 2, as for train.
printf 'not a library\n' >"$tmp/notlib.so"
NNC_NVRTC="$tmp/notlib.so" expect 2 "NNC_NVRTC=.*cannot be loaded" emit --stage ptx models/mlp.nn -o "$tmp/x.ptx"
NNC_NVRTC="$tmp/notlib.so" expect 2 "NNC_NVRTC=.*cannot be loaded" emit --stage ptx "$tmp/cnn.kir" -o "$tmp/x.ptx"
# A library that is something else is named as not what it should be, not as too old.
NNC_NVRTC=libm.so.6 expect 2 "libm.so.6 is not NVRTC (it has no nvrtcVersion)" emit --stage ptx models/mlp.nn -o "$tmp/x.ptx"
if "$nnc" emit --stage ptx models/mlp.nn -o "$tmp/x.ptx" 2>/dev/null; then
  expect 2 "cannot compile for sm_1000" emit --stage ptx --arch sm_1000 models/mlp.nn -o "$tmp/x.ptx"
  NNC_LIBCUDA=libm.so.6 expect 2 "libm.so.6 is not the NVIDIA driver's libcuda" train --backend cuda models/mlp.nn --epochs 0 --out "$tmp/lm"
fi

# NNC_CC that is not a C compiler: one that fails silently, one that
# succeeds without writing the shared object (exit 2: the machine's setup).
printf '#!/bin/sh\necho not a compiler\nexit 0\n' >"$tmp/fakecc"
chmod +x "$tmp/fakecc"
NNC_CC=false expect 2 "printed nothing: is false a C compiler" train --backend cuda-emu models/mlp.nn --epochs 0 --out "$tmp/cc1"
NNC_CC="$tmp/fakecc" expect 2 "succeeded but wrote no shared object" train --backend cuda-emu models/mlp.nn --epochs 0 --out "$tmp/cc2"
grep -q "not a compiler" "$tmp/out" && ok "what that NNC_CC printed is shown" || { bad "NNC_CC's output"; cat "$tmp/out"; }

# Checkpoints across backends (Fashion-MNIST from Debian's package).
data=/usr/share/datasets/fashion-mnist
if [ ! -d "$data" ] || ! "$nnc" train --backend cuda-emu models/mlp.nn --epochs 0 --out "$tmp/probe" >/dev/null 2>&1; then
  echo "skip: the checkpoint checks need $data and a C compiler"
  exit $fail
fi
train() {   # train OUT BACKEND [more options]
  out=$1 backend=$2
  shift 2
  NO_COLOR=1 "$nnc" train models/mlp100.nn --backend "$backend" --limit 1000 --test-limit 300 --seed 3 \
    --batch 50 --out "$tmp/$out" --progress none "$@" >"$tmp/$out.log" 2>&1 || { bad "train $out"; cat "$tmp/$out.log"; }
}
train emu cuda-emu --epochs 1
train cpu1 cpu --epochs 1
acc_emu=$(awk '/^test:/ { print $5 }' "$tmp/emu.log") acc_cpu=$(awk '/^test:/ { print $5 }' "$tmp/cpu1.log")
awk -v a="$acc_emu" -v b="$acc_cpu" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0.5 && d <= 0.01) }' \
  && ok "an epoch on cuda-emu: test accuracy $acc_emu (on cpu $acc_cpu)" \
  || { bad "cuda-emu accuracy '$acc_emu', cpu '$acc_cpu'"; cat "$tmp/emu.log"; }
for be in cpu cuda-emu; do
  "$nnc" eval models/mlp100.nn --backend $be --weights "$tmp/emu/checkpoint.safetensors" --limit 300 >"$tmp/ev_$be.log" 2>&1 \
    || { bad "eval on $be"; cat "$tmp/ev_$be.log"; }
done
a=$(grep -o 'accuracy 0\.[0-9]*' "$tmp/ev_cpu.log" | head -1) b=$(grep -o 'accuracy 0\.[0-9]*' "$tmp/ev_cuda-emu.log" | head -1)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "a cuda-emu checkpoint evaluates alike on cpu and cuda-emu ($a)" \
  || { bad "eval across backends: cpu '$a', cuda-emu '$b'"; }
train mixed cuda-emu --epochs 2 --resume "$tmp/cpu1/checkpoint.safetensors"
train cpu2 cpu --epochs 2
grep -q "^epoch 2" "$tmp/mixed.log" && ok "a cpu run resumes on cuda-emu" || { bad "resume on cuda-emu"; cat "$tmp/mixed.log"; }
loss_mixed=$(awk -F, 'NR == 3 { print $4 }' "$tmp/mixed/metrics.csv") loss_cpu=$(awk -F, 'NR == 3 { print $4 }' "$tmp/cpu2/metrics.csv")
awk -v a="$loss_mixed" -v b="$loss_cpu" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 1e-3 * b) }' \
  && ok "epoch 2 on cuda-emu after epoch 1 on cpu: loss $loss_mixed, all on cpu $loss_cpu" \
  || { bad "resumed loss $loss_mixed against $loss_cpu"; cat "$tmp/mixed/metrics.csv" "$tmp/cpu2/metrics.csv"; }
exit $fail
