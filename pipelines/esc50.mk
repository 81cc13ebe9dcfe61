# esc50.mk: the paper's k-fold experiment on ESC-50 (2,000 five-second environmental sound clips, 50 classes, 5 official folds).
#   make -f pipelines/esc50.mk ESC50=DIR [SIMCLR_INIT=FILE | SIMCLR_IMAGES=DIR] [SUPERVISED_INIT=FILE | SUP_IMAGES=DIR] [-jN]
# Expects ESC50/meta/esc50.csv and ESC50/audio/*.wav (github.com/karolpiczak/ESC-50).
# Spectrograms once with wav2mel --preset esc50 (Palanisamy et al.'s 3-channel setting, as in the
# paper), then per test fold: vanilla / SimCLR / supervised fine-tuning and linear evaluation,
# scores, t-SNE and confusion pictures, and results/esc50/table.md.  Rules and layout: common.mk.

# ---- knobs (make VAR=value); changing one re-runs exactly what depends on it ----
# dataset root
ESC50 ?=
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
FOLDS  ?= 1 2 3 4 5
# encoders: published checkpoints, or images for our own pre-training (simclr.mk, supervised.mk)
SIMCLR_INIT     ?=
SIMCLR_IMAGES   ?=
SUPERVISED_INIT ?=
SUP_IMAGES      ?=
# spectrogram options
MEL_OPTS ?= --preset esc50
# outputs and intermediate files
OUT  ?= results/esc50
WORK ?= work/esc50
# BIN (tools, default build/bin of this checkout) and THREADS (cores / make jobs): see common.mk

DATASET := esc50
DATASET_TITLE := ESC-50
ALL_FOLDS := 1 2 3 4 5
MEL := $(WORK)/mel.tsz
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

$(call settings,$(CFG)/mel.cfg,root=$(ESC50) opts=$(MEL_OPTS) data=$(foreach f,$(ESC50)/meta/esc50.csv $(ESC50)/audio,$(call fingerprint,$(f))))

$(MEL): $(CFG)/mel.cfg $(BIN)/wav2mel
	@test -n $(call sq,$(ESC50)) || { echo "esc50.mk: set ESC50=DIR (see the top of $(PIPELINES)/esc50.mk)" >&2; exit 1; }
	$(call say,ESC-50: log-mel spectrograms)
	@mkdir -p $(@D)
	$(RUN) $(BIN)/wav2mel $(MEL_OPTS) --esc50 $(ESC50) -j $(THREADS) -o $@

.DEFAULT_GOAL := all
