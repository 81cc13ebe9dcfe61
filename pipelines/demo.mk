# demo.mk: the whole method on data a fresh Debian 12 machine installs from its own archive
# (`make demo` runs `make -f pipelines/demo.mk` after building the tools):
#   1. pipelines/demo-data.sh installs the sound and picture packages when missing, and lists ~550
#      labelled drum and percussion one-shots in 6 classes with 5 group-disjoint folds, 60 high-resolution
#      photos (scenes) and ~350 photographic cut-outs (objects);
#   2. random crops of both make the natural-image pre-training set; SimCLR pre-trains a ResNet;
#   3. k-fold, label-scarce (TRAIN_PER_CLASS clips of each class per training fold, the whole test fold;
#      spectrograms scaled like the crops, tsz norm): from-scratch (vanilla) and SimCLR-initialised
#      fine-tuning, linear evaluation of the SimCLR and of a random encoder, scores, paired comparisons,
#      t-SNE and confusion PNGs;
#   4. results/demo/table.md, printed at the end.
# Budget: under 30 minutes on 2 cores; a second run recomputes nothing.

# ---- knobs (make -f pipelines/demo.mk VAR=value); changing one re-runs what depends on it ----
# network: ResNet-18 at a quarter of the standard width, torchvision's stem (7x7/2 and max-pool),
# which keeps the 2-core budget; the same network is pre-trained, fine-tuned and trained from scratch
ARCH   ?= resnet18
WIDTH  ?= 16
STEM   ?= imagenet
# Label-scarce: 10 training clips of each class per fold (60 of the ~445), the test folds whole.  With all
# ~445 clips from-scratch training already reaches 86 %, and small pre-training cannot show; with few
# labels it can (on ESC-10, 8 a class, SimCLR-initialised fine-tuning gained 5 points; see README).
TRAIN_PER_CLASS ?= 10
# fine-tuning (Adam, cosine schedule) and linear evaluation (frozen encoder, linear head); 40 epochs of
# 60 clips are 80 steps
EPOCHS ?= 40
BATCH  ?= 32
LR     ?= 1e-3
WD     ?= 1e-4
FT_OPTS ?= --schedule cosine
LIN_EPOCHS ?= 40
LIN_LR ?= 1e-2
LIN_OPTS ?= --schedule cosine
SEED   ?= 1
# folds of the sound set (NFOLDS) and the test folds to run (FOLDS)
NFOLDS ?= 5
FOLDS  ?= $(shell seq 1 $(NFOLDS))
# spectrograms: 1 s at 22.05 kHz (drum hits: pad short clips, keep the start of long ones), three
# window:hop pairs as the paper's 3-channel images, 64 mels, 96 frames
MEL_OPTS ?= --preset esc50 --rate 22050 --duration 1 --fit pad --n-fft 2048 --mels 64 --channels 10:5,25:10,50:25 --width 96
# natural images: each photo's shorter side resized to PHOTO_SIDE, then CROPS_PER_PHOTO random crops
# of CROP_AREA (fraction of the photo) resized to CROP_SIZE pixels; NPHOTOS > 0 uses only the first
# NPHOTOS photos (quick trials; NSTAMPS the same for the objects).  Each object cut-out, blended onto white, shorter side STAMP_SIDE,
# gives CROPS_PER_STAMP crops of STAMP_AREA of it (objects are small: most of each is kept).
NPHOTOS         ?= 0
NSTAMPS         ?= 0
PHOTO_SIDE      ?= 384
CROPS_PER_PHOTO ?= 100
CROP_AREA       ?= 0.02,0.2
CROP_SIZE       ?= 72
STAMP_SIDE      ?= 80
CROPS_PER_STAMP ?= 10
STAMP_AREA      ?= 0.3,1
# SimCLR pre-training on the crops (temperature 0.2: with batch 128 it learns faster than 0.5).
# 10 epochs: of 5, 10, 20 and 40, measured on inner folds (INNER_FOLDS=1, no test fold read), 10 gave
# the best fine-tuning and linear evaluation against from scratch (README, "Results")
SIMCLR_EPOCHS ?= 10
SIMCLR_BATCH  ?= 128
SIMCLR_SIZE   ?= 64
SIMCLR_TEMP   ?= 0.2
SIMCLR_STEM   ?= $(STEM)
# parallel jobs of `make demo` when make was given no -j: one job per core, one thread each (these
# small networks run better as independent single-threaded jobs than as one job on every core)
DEMO_JOBS ?= $(NPROC)
# outputs and intermediate files
OUT  ?= results/demo
WORK ?= work/demo
DATA ?= $(WORK)/data
# BIN (tools, default build/bin of this checkout) and THREADS (cores / make jobs): see common.mk

DATASET := demo
DATASET_TITLE := Demo (Debian drum and percussion samples)
ALL_FOLDS := $(shell seq 1 $(NFOLDS))
MEL := $(WORK)/mel.tsz
SIMCLR_WORK := $(WORK)/simclr
SIMCLR_TSZ  := $(WORK)/crops.tsz
FT_METHODS  ?= vanilla simclr
LIN_METHODS ?= vanilla simclr
COMPARE     ?= ft-simclr:ft-vanilla lin-simclr:lin-vanilla
# Media directories, fingerprinted so that a package upgrade re-runs what it feeds.
MEDIA := /usr/share/hydrogen/data/drumkits /usr/share/sonic-pi/samples /usr/share/backgrounds/mate/nature /usr/share/wallpapers \
  /usr/share/backgrounds /usr/share/tuxpaint/stamps

include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

$(call settings,$(CFG)/mel.cfg,opts=$(MEL_OPTS) nfolds=$(NFOLDS) data=$(foreach d,$(MEDIA),$(call fingerprint,$(d))))
$(call settings,$(CFG)/crops.cfg,photos=$(NPHOTOS) stamps=$(NSTAMPS) side=$(PHOTO_SIDE) crops=$(CROPS_PER_PHOTO) area=$(CROP_AREA) size=$(CROP_SIZE) seed=$(SEED) stamp_side=$(STAMP_SIDE) stamp_crops=$(CROPS_PER_STAMP) stamp_area=$(STAMP_AREA))
ENC_DESC_simclr = SimCLR pre-training on $(CROPS_PER_PHOTO) random crops ($(CROP_SIZE) px, $(subst $(,), to ,$(CROP_AREA)) of the area) \
  of each photo of `$(DATA)/photos.txt` (shorter side $(PHOTO_SIDE) px) and $(CROPS_PER_STAMP) ($(subst $(,), to ,$(STAMP_AREA))) of each object of \
  `$(DATA)/stamps.txt` (on white, shorter side $(STAMP_SIDE) px) (`$(SIMCLR_MODEL)`): `$(SIMCLR_SETTINGS)`

.PHONY: demo
.DEFAULT_GOAL := demo
# demo-data.sh first installs the media packages if needed; the experiment is a second make, which
# reads its settings (with the fingerprints of the now installed media) only then.
demo:
	@sh $(PIPELINES)/demo-data.sh --install --folds $(NFOLDS) $(DATA)
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(DEMO_JOBS)) -f $(firstword $(MAKEFILE_LIST)) all
	@printf '\n' && cat $(OUT)/table.md

$(DATA)/esc/meta/esc50.csv $(DATA)/photos.txt $(DATA)/stamps.txt:
	sh $(PIPELINES)/demo-data.sh --folds $(NFOLDS) $(DATA)

$(MEL): $(DATA)/esc/meta/esc50.csv $(CFG)/mel.cfg $(BIN)/wav2mel
	$(call say,demo: log-mel spectrograms of $(shell wc -l < $(DATA)/sounds.tsv 2>/dev/null) clips)
	$(RUN) $(BIN)/wav2mel $(MEL_OPTS) --esc50 $(DATA)/esc -j $(THREADS) -o $@

$(WORK)/photos.tsz: $(DATA)/photos.txt $(CFG)/crops.cfg $(BIN)/img2tensor
	$(call say,demo: decoding the photos)
	$(if $(filter-out 0,$(NPHOTOS)),head -n $(NPHOTOS),cat) $(DATA)/photos.txt | \
	$(RUN) $(BIN)/img2tensor --u8 --no-labels --resize $(PHOTO_SIDE) -j $(THREADS) -o $@ --list -

$(WORK)/stamps.tsz: $(DATA)/stamps.txt $(CFG)/crops.cfg $(BIN)/img2tensor
	$(call say,demo: decoding the object cut-outs)
	$(if $(filter-out 0,$(NSTAMPS)),head -n $(NSTAMPS),cat) $(DATA)/stamps.txt | \
	$(RUN) $(BIN)/img2tensor --u8 --no-labels --matte white --resize $(STAMP_SIDE) -j $(THREADS) -o $@ --list -

# Random crops: augment's SimCLR policy with everything but the crop (and flip) switched off; scenes,
# then objects (simclr-train's augment shuffles them every epoch).
$(SIMCLR_TSZ): $(WORK)/photos.tsz $(WORK)/stamps.tsz $(CFG)/crops.cfg $(BIN)/augment $(BIN)/tsz
	$(call say,demo: $(CROPS_PER_PHOTO) random crops of each photo$(,) $(CROPS_PER_STAMP) of each object)
	$(RUN) $(BIN)/augment --policy simclr --views $(CROPS_PER_PHOTO) --size $(CROP_SIZE) \
	  --scale $(CROP_AREA) --jitter 0 --gray 0 --blur 0 --u8 --seed $(SEED) -j $(THREADS) -o $(WORK)/crops-scenes.tsz $<
	$(RUN) $(BIN)/augment --policy simclr --views $(CROPS_PER_STAMP) --size $(CROP_SIZE) \
	  --scale $(STAMP_AREA) --jitter 0 --gray 0 --blur 0 --u8 --seed $(SEED) -j $(THREADS) -o $(WORK)/crops-objects.tsz $(word 2,$^)
	$(BIN)/tsz cat -o $@ $(WORK)/crops-scenes.tsz $(WORK)/crops-objects.tsz
	rm -f $(WORK)/crops-scenes.tsz $(WORK)/crops-objects.tsz
