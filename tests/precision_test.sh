#!/bin/sh
# precision_test.sh: --precision fp32|bf16 of finetune, simclr-train and embed.  A bad value is a usage
# error (2); bf16 on a CPU without AVX512_BF16 (pretended with EARSIGHT_NO_BF16=1) is a one-line run-time
# error (1); where the CPU has it, bf16 fine-tunes the synthetic stripes to the fp32 accuracy, is
# deterministic with two threads, and embeds features close to fp32's; fp32 stays the default (explicit
# --precision fp32 writes the same bytes as no option).
. "$EARSIGHT_ROOT/tests/lib.sh"
GEN="$EARSIGHT_BIN/../tests/train_test"
[ -x "$GEN" ] || { fail "precision: $GEN is missing (make builds it)"; finish; }
NET="--width 4 --batch 16 -j 1"
"$GEN" gen train.tsz n=96 k=3 seed=1 && "$GEN" gen val.tsz n=48 k=3 seed=2 || { fail "precision: synthetic data"; finish; }

for t in finetune simclr-train embed; do
    "$t" --help | grep -q -- '--precision=P' && pass "$t --help lists --precision" || fail "$t --help: no --precision"
done
expect_fail "finetune --precision fp16: usage error" 2 "--precision: 'fp16' is not fp32 or bf16" \
    finetune --precision fp16 -o m.tsz train.tsz
expect_fail "simclr-train --precision BF16: usage error" 2 "--precision: 'BF16' is not fp32 or bf16" \
    simclr-train --precision BF16 -o m.tsz train.tsz
expect_fail "embed --precision '': usage error" 2 "--precision: '' is not fp32 or bf16" \
    embed --precision '' --model m.tsz train.tsz

# fp32: the default, and exactly what it was
finetune $NET --epochs 2 --lr 1e-2 -o f0.tsz train.tsz 2>run.err &&
    finetune $NET --epochs 2 --lr 1e-2 --precision fp32 -o f1.tsz train.tsz 2>>run.err &&
    tsz npy -o f0.npz f0.tsz && tsz npy -o f1.npz f1.tsz && cmp -s f0.npz f1.npz &&
    pass "finetune --precision fp32 = the default, byte for byte" || fail "finetune fp32 default: $(head -c 300 run.err)"

# a CPU without bf16: one clear line, status 1, for each tool
export EARSIGHT_NO_BF16=1
expect_fail "finetune --precision bf16 without AVX512_BF16: exit 1" 1 "finetune: --precision bf16: this CPU has no AVX512_BF16" \
    finetune $NET --precision bf16 -o m.tsz train.tsz
expect_fail "simclr-train --precision bf16 without AVX512_BF16: exit 1" 1 "simclr-train: --precision bf16: this CPU has no AVX512_BF16" \
    simclr-train --precision bf16 -o m.tsz train.tsz
expect_fail "embed --precision bf16 without AVX512_BF16: exit 1" 1 "embed: --precision bf16: this CPU has no AVX512_BF16" \
    embed --precision bf16 --model f0.tsz train.tsz
check "EARSIGHT_NO_BF16=1: --precision fp32 still runs" embed --precision fp32 --model f0.tsz -o e.tsz val.tsz
unset EARSIGHT_NO_BF16

if ! grep -q avx512_bf16 /proc/cpuinfo 2>/dev/null; then
    skip "bf16 runs: this CPU has no AVX512_BF16"
    finish
fi

# accuracy: bf16 reaches fp32's validation accuracy on the stripes (10 epochs, as finetune_test)
vacc() { awk -F'\t' 'END {print $5}' "$1"; }
if finetune $NET --epochs 10 --lr 1e-2 --val val.tsz --log l32.tsv -o m32.tsz train.tsz 2>run.err &&
   finetune $NET --epochs 10 --lr 1e-2 --val val.tsz --log l16.tsv --precision bf16 -o m16.tsz train.tsz 2>>run.err; then
    a32=$(vacc l32.tsv) a16=$(vacc l16.tsv)
    awk -v a="$a32" -v b="$a16" 'BEGIN {exit !(b >= 0.9 && b >= a - 0.05)}' &&
        pass "finetune --precision bf16: validation accuracy $a16 (fp32 $a32; want >= 0.9 and >= fp32 - 0.05)" ||
        fail "finetune --precision bf16: validation accuracy $a16, fp32 $a32"
    tsz npy -o m32.npz m32.tsz && tsz npy -o m16.npz m16.tsz && ! cmp -s m32.npz m16.npz &&
        pass "finetune --precision bf16 trains differently from fp32 (bf16 products used)" ||
        fail "finetune --precision bf16 wrote fp32's model"
else
    fail "finetune bf16/fp32 runs: $(head -c 300 run.err)"
fi

# determinism: bf16 twice with two threads gives the same bytes
mkdir -p d1 d2
(cd d1 && finetune $NET -j 2 --epochs 2 --lr 1e-2 --precision bf16 -o m.tsz ../train.tsz) &&
(cd d2 && finetune $NET -j 2 --epochs 2 --lr 1e-2 --precision bf16 -o m.tsz ../train.tsz) &&
    cmp -s d1/m.tsz d2/m.tsz && pass "finetune --precision bf16: two identical runs (-j 2) write identical models" ||
    fail "finetune --precision bf16: repeated run differs"

npy_values() {   # the f32 values of a stacked .npy, one per line (data after the 10 + HEADER_LEN bytes)
    hl=$(od -A n -t u2 -j 8 -N 2 "$1" | tr -d ' ')
    od -A n -v -t f4 -j $((10 + hl)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
# embed: bf16 features within a few per cent of fp32's (8-bit mantissas)
if embed -j 1 --model m32.tsz -o e32.tsz val.tsz && embed -j 1 --precision bf16 --model m32.tsz -o e16.tsz val.tsz &&
   tsz npy --stack -o e32.npy e32.tsz && tsz npy --stack -o e16.npy e16.tsz; then
    npy_values e32.npy >a.txt && npy_values e16.npy >b.txt
    d=$(paste a.txt b.txt | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; s = $1 < 0 ? -$1 : $1; if (s > x) x = s}
                                 END {printf "%.3g", (x > 0 ? m / x : 1)}')
    awk -v d="$d" 'BEGIN {exit !(d > 0 && d < 0.05)}' &&
        pass "embed --precision bf16: features differ from fp32 by $d of their scale (want (0, 0.05))" ||
        fail "embed --precision bf16: difference $d"
else
    fail "embed --precision bf16"
fi

# simclr-train: a bf16 run on augmented pairs of the stripes works and is repeatable
P="--width 2 --stem small -b 8 -j 2 --proj-dim 8 --seed 3 --no-checkpoint"
augment --policy simclr --views 2 --size 16 --seed 1 -j 1 --raw -o pairs.tsz train.tsz &&
(cd d1 && simclr-train $P --precision bf16 -o s.tsz ../pairs.tsz 2>s.err) &&
(cd d2 && simclr-train $P --precision bf16 -o s.tsz ../pairs.tsz 2>s.err) && cmp -s d1/s.tsz d2/s.tsz &&
    pass "simclr-train --precision bf16: runs; two runs (-j 2) write identical models" ||
    fail "simclr-train --precision bf16: $(head -c 300 d1/s.err)"
finish
