# us8k.mk: the paper's k-fold experiment on UrbanSound8K (8,732 urban sound clips (up to 4 s, fitted to 4 s), 10 classes, 10 official folds).
#   make -f pipelines/us8k.mk US8K=DIR [SIMCLR_INIT=FILE | SIMCLR_IMAGES=DIR] [SUPERVISED_INIT=FILE | SUP_IMAGES=DIR] [-jN]
# Expects US8K/metadata/UrbanSound8K.csv and US8K/audio/fold1..fold10/*.wav (urbansounddataset.weebly.com).
# Spectrograms once with wav2mel --preset us8k (Palanisamy et al.'s 3-channel setting, as in the
# paper), then per test fold: vanilla / SimCLR / supervised fine-tuning and linear evaluation,
# scores, t-SNE and confusion pictures, and results/us8k/table.md.  Rules and layout: common.mk.

# ---- knobs (make VAR=value); changing one re-runs exactly what depends on it ----
# dataset root
US8K ?=
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
MEL_OPTS ?= --preset us8k
# outputs and intermediate files
OUT  ?= results/us8k
WORK ?= work/us8k
# BIN (tools, default build/bin of this checkout) and THREADS (cores / make jobs): see common.mk

DATASET := us8k
DATASET_TITLE := UrbanSound8K
ALL_FOLDS := 1 2 3 4 5 6 7 8 9 10
MEL := $(WORK)/mel.tsz
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

$(call settings,$(CFG)/mel.cfg,root=$(US8K) opts=$(MEL_OPTS) data=$(foreach f,$(US8K)/metadata/UrbanSound8K.csv $(US8K)/audio,$(call fingerprint,$(f))))

$(MEL): $(CFG)/mel.cfg $(BIN)/wav2mel
	@test -n $(call sq,$(US8K)) || { echo "us8k.mk: set US8K=DIR (see the top of $(PIPELINES)/us8k.mk)" >&2; exit 1; }
	$(call say,UrbanSound8K: log-mel spectrograms)
	@mkdir -p $(@D)
	$(RUN) $(BIN)/wav2mel $(MEL_OPTS) --urbansound8k $(US8K) -j $(THREADS) -o $@

.DEFAULT_GOAL := all
