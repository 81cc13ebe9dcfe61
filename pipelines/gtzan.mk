# gtzan.mk: the paper's k-fold experiment on GTZAN (1,000 thirty-second music clips, 10 genres, 10 folds by wav2mel's rule).
#   make -f pipelines/gtzan.mk GTZAN=DIR [SIMCLR_INIT=FILE | SIMCLR_IMAGES=DIR] [SUPERVISED_INIT=FILE | SUP_IMAGES=DIR] [-jN]
# Expects GTZAN/genres/<genre>/*.wav or *.au (the marsyas.info release), or genres_original/ (the
# Kaggle copy), or the genre folders directly in GTZAN (see wav2mel(1)).
# Spectrograms once with wav2mel --preset gtzan (Palanisamy et al.'s 3-channel setting, as in the
# paper), then per test fold: vanilla / SimCLR / supervised fine-tuning and linear evaluation,
# scores, t-SNE and confusion pictures, and results/gtzan/table.md.  Rules and layout: common.mk.

# ---- knobs (make VAR=value); changing one re-runs exactly what depends on it ----
# dataset root
GTZAN ?=
# network: resnet18|resnet34|resnet50 (the paper: resnet50 with published weights), base width, stem
ARCH   ?= resnet18
WIDTH  ?= 64
STEM   ?= imagenet
# fine-tuning (Palanisamy et al.'s recipe: Adam, 70 epochs, lr 1e-4, weight decay 1e-3, batch 32)
EPOCHS ?= 70
BATCH  ?= 32
LR     ?= 1e-4
WD     ?= 1e-3
SEED   ?= 1
# linear evaluation (frozen encoder)
LIN_EPOCHS ?= 70
LIN_LR ?= 1e-3
# test folds to run
FOLDS  ?= 1 2 3 4 5 6 7 8 9 10
# encoders: published checkpoints, or images for our own pre-training (simclr.mk, supervised.mk)
SIMCLR_INIT     ?=
SIMCLR_IMAGES   ?=
SUPERVISED_INIT ?=
SUP_IMAGES      ?=
# spectrogram options
MEL_OPTS ?= --preset gtzan
# outputs and intermediate files
OUT  ?= results/gtzan
WORK ?= work/gtzan
# BIN (tools, default build/bin of this checkout) and THREADS (cores / make jobs): see common.mk

DATASET := gtzan
DATASET_TITLE := GTZAN
ALL_FOLDS := 1 2 3 4 5 6 7 8 9 10
MEL := $(WORK)/mel.tsz
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

$(call settings,$(CFG)/mel.cfg,root=$(GTZAN) opts=$(MEL_OPTS) data=$(call fingerprint,$(GTZAN)))

$(MEL): $(CFG)/mel.cfg $(BIN)/wav2mel
	@test -n $(call sq,$(GTZAN)) || { echo "gtzan.mk: set GTZAN=DIR (see the top of $(PIPELINES)/gtzan.mk)" >&2; exit 1; }
	$(call say,GTZAN: log-mel spectrograms)
	@mkdir -p $(@D)
	$(RUN) $(BIN)/wav2mel $(MEL_OPTS) --gtzan $(GTZAN) -j $(THREADS) -o $@

.DEFAULT_GOAL := all
