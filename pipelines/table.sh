#!/bin/sh
# placeholder
echo "# $TITLE"
for r in $RUNS; do echo "## $r"; for f in $FOLDS; do echo "fold $f"; done; done
