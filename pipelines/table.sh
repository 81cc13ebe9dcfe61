#!/bin/sh
# table.sh: results/<dataset>/table.md from the score outputs of a k-fold pipeline (common.mk runs it).
# The paper's two tables -- fine-tuning and linear evaluation, rows by pre-training -- with our
# fold-averaged accuracy, every fold, and the paper's figure beside it (pipelines/paper.tsv), then
# the paired comparisons, the pictures and the settings.  No clock, host or thread count appears in
# the table, so identical results give identical bytes.
# Environment (set by common.mk): DATASET TITLE OUT CFG FOLDS RUNS COMPARISONS PAPER
#   ENC_DESC_simclr ENC_DESC_supervised (how each encoder was made)
set -eu
export LC_ALL=C

# accuracy (percent, one decimal) of fold K or of "mean"/"sd" from a score --csv file
acc() { # acc CSV SCOPE(K|mean|sd) METRIC
    awk -F, -v want="$2" -v metric="$3" '
        $3 == metric && (($1 == want) || (want ~ /^[0-9]+$/ && $1 ~ ("fold" want "\\.logits\\.tsz$"))) {
            printf "%.1f", 100 * $4; found = 1; exit }
        END { if (!found) printf "?" }' "$1"
}
paper() { # paper RUN: the paper's accuracy for this dataset and run, or an em dash
    v=$(awk -F'\t' -v d="$DATASET" -v r="$1" '!/^#/ && $1 == d && $2 == r && $3 != "" { print $3; exit }' "$PAPER")
    echo "${v:-—}"
}
label() {
    case $1 in
        ft-vanilla) echo "None (vanilla: trained from scratch)" ;;
        ft-supervised) echo "Supervised pre-training" ;;
        ft-simclr) echo "Self-supervised pre-training (SimCLR)" ;;
        lin-vanilla) echo "Random encoder (untrained)" ;;
        lin-supervised) echo "Supervised pre-training" ;;
        lin-simclr) echo "Self-supervised pre-training (SimCLR)" ;;
        *) echo "$1" ;;
    esac
}
nfolds=$(echo $FOLDS | wc -w)
header() {
    printf '| %s | run | accuracy (%%) |' "$1"
    for k in $FOLDS; do printf ' fold %s |' "$k"; done
    printf ' paper (%%) |\n|---|---|---:|'
    for k in $FOLDS; do printf -- '---:|'; done
    printf -- '---:|\n'
}
rows() { # rows PREFIX: one row per run with that prefix, in the paper's order
    for m in vanilla supervised simclr; do
        r=$1-$m
        case " $RUNS " in *" $r "*) ;; *) continue ;; esac
        csv=$OUT/$r/score.csv
        printf '| %s | %s | %s ± %s |' "$(label "$r")" "$r" "$(acc "$csv" mean accuracy)" "$(acc "$csv" sd accuracy)"
        for k in $FOLDS; do printf ' %s |' "$(acc "$csv" "$k" accuracy)"; done
        printf ' %s |\n' "$(paper "$r")"
    done
}

echo "# $TITLE: earsight results"
echo
echo "Accuracy on the held-out fold, mean ± sample standard deviation over $nfolds test folds ($FOLDS)."
echo "\"paper\" is Shin et al. 2021 (Appl. Sci. 11(7), 3043) where pipelines/paper.tsv has it."
echo
case " $RUNS " in *" ft-"*)
    echo "## Table 1. Fine-tuning (every layer trained on the spectrograms)"
    echo
    header "pre-training"
    rows ft
    echo
esac
case " $RUNS " in *" lin-"*)
    echo "## Table 2. Linear evaluation (encoder frozen, only a linear classifier trained)"
    echo
    header "encoder"
    rows lin
    echo
esac

if [ -n "$COMPARISONS" ]; then
    echo "## Paired comparisons on the same clips (score --compare)"
    echo
    echo "| A vs B | accuracy A (%) | accuracy B (%) | A − B (points) | 95% bootstrap interval | only A right | only B right | McNemar exact p |"
    echo "|---|---:|---:|---:|---|---:|---:|---:|"
    for c in $COMPARISONS; do
        a=${c%%:*}; b=${c#*:}; f=$OUT/compare-$a-vs-$b.csv
        awk -F, -v a="$a" -v b="$b" '
            $1 == "mean" && $3 == "accuracy_a" { A = 100 * $4 }
            $1 == "mean" && $3 == "accuracy_b" { B = 100 * $4 }
            $1 == "paired" { v[$3] = $4 }
            END { printf "| %s vs %s | %.1f | %.1f | %+.1f | [%+.1f, %+.1f] | %d | %d | %.3g |\n", a, b, A, B,
                  100 * v["difference"], 100 * v["ci_low"], 100 * v["ci_high"], v["a_only_right"],
                  v["b_only_right"], v["mcnemar_exact_p"] }' "$f"
    done
    echo
    echo "Fold means are compared clip by clip over all test folds; the full reports are in compare-*.txt."
    echo
fi

echo "## Pictures"
echo
echo "| run | confusion matrix (all folds) | t-SNE of the test-fold features |"
echo "|---|---|---|"
tf=$(sed -n 's/^fold=\([0-9]*\).*/\1/p' "$CFG/tsne.cfg")
for r in $RUNS; do
    echo "| $r | ![confusion $r]($r/confusion.png) | ![t-SNE $r]($r/tsne.png) (fold $tf) |"
done
echo

echo "## Settings"
echo
echo "- spectrograms: \`$(cat "$CFG/mel.cfg" | sed 's/ data=.*//')\`"
echo "- fine-tuning: \`$(cat "$CFG/ft.cfg")\`"
echo "- linear evaluation: \`$(cat "$CFG/lin.cfg")\`"
case " $RUNS " in *"-simclr "*) echo "- SimCLR encoder: ${ENC_DESC_simclr:-?}" ;; esac
case " $RUNS " in *"-supervised "*) echo "- supervised encoder: ${ENC_DESC_supervised:-?}" ;; esac
echo "- every result file records the commands that made it in its \`history\` attribute (\`tsz info FILE\`);"
echo "  per-epoch training logs are in the work directory (\`RUN/foldK/log.tsv\`)."
