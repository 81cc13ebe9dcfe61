# simclr.mk: SimCLR pre-training of an encoder on unlabelled natural images:
#   img2tensor --u8 --no-labels | augment --policy simclr --views 2 --epochs E | simclr-train
# Run it alone:  make -f pipelines/simclr.mk SIMCLR_IMAGES=DIR [knobs]   (writes $(SIMCLR_MODEL))
# or let esc50.mk/us8k.mk/gtzan.mk/demo.mk include it (they do when SIMCLR_IMAGES is set and
# SIMCLR_INIT is not).
#
# Knobs:
#   SIMCLR_IMAGES   image files and/or directories (walked recursively, JPEG and PNG)
#   SIMCLR_TSZ      instead of SIMCLR_IMAGES: a prepared u8 image stream (with a rule of its own)
#   SIMCLR_WORK     work directory (default work/simclr); the encoder is $(SIMCLR_WORK)/encoder.tsz
#   SIMCLR_CROPS    the demo's recipe (pipelines/demo.mk): each image's shorter side resized to
#                   SIMCLR_RESIZE (384), then SIMCLR_CROPS (100) random crops of SIMCLR_CROP_AREA
#                   (0.02,0.2) of its area, SIMCLR_CROP (72) pixels square, flipped at random, are the
#                   training set (augment; about 1.5 MB of crops per image). SIMCLR_CROPS=0: one
#                   centre crop per image instead (SIMCLR_RESIZE default 72), for large folders.
#   SIMCLR_SIZE     augmented view size (64)
#   SIMCLR_EPOCHS   passes over the crops (10; 100 with SIMCLR_CROPS=0);  SIMCLR_BATCH  pairs per step (256)
#   SIMCLR_LR SIMCLR_TEMP SIMCLR_STEM  simclr-train --lr, --temperature, --stem (small: 3x3 stem, no max-pool)
#   SIMCLR_AUG_OPTS SIMCLR_OPTS        further augment / simclr-train options
# An interrupted run resumes from $(SIMCLR_WORK)/encoder.ckpt: augment replays the stream from the
# start and simclr-train skips the pairs it has already trained on.
#   ARCH WIDTH SEED THREADS BIN        as in common.mk

ifndef EARSIGHT_SIMCLR_MK
EARSIGHT_SIMCLR_MK := 1

include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

SIMCLR_IMAGES ?=
SIMCLR_WORK   ?= work/simclr
SIMCLR_CROPS  ?= 100
SIMCLR_CROP_AREA ?= 0.02,0.2
SIMCLR_CENTRE := $(filter 0,$(strip $(SIMCLR_CROPS)))
SIMCLR_RESIZE ?= $(if $(SIMCLR_CENTRE),72,384)
SIMCLR_CROP   ?= 72
SIMCLR_SIZE   ?= 64
# 10 epochs over the crops: the best of 5, 10, 20 and 40 on the demo's inner folds (README)
SIMCLR_EPOCHS ?= $(if $(SIMCLR_CENTRE),100,10)
SIMCLR_BATCH  ?= 256
SIMCLR_LR     ?=
# temperature 0.2, the demo's (at batch 128 it learnt faster there than simclr-train's default 0.5)
SIMCLR_TEMP   ?= 0.2
SIMCLR_STEM   ?= $(STEM)
SIMCLR_AUG_OPTS ?=
SIMCLR_OPTS   ?=
SIMCLR_MODEL  := $(SIMCLR_WORK)/encoder.tsz
SIMCLR_TSZ    ?= $(SIMCLR_WORK)/$(if $(SIMCLR_CENTRE),images,crops).tsz

SIMCLR_SETTINGS := arch=$(ARCH) width=$(WIDTH) stem=$(SIMCLR_STEM) size=$(SIMCLR_SIZE) epochs=$(SIMCLR_EPOCHS) \
  batch=$(SIMCLR_BATCH) lr=$(or $(SIMCLR_LR),default) temp=$(or $(SIMCLR_TEMP),default) seed=$(SEED) \
  aug=$(SIMCLR_AUG_OPTS) opts=$(SIMCLR_OPTS)$(MPIRUN_SETTING)
$(call settings,$(SIMCLR_WORK)/cfg/train.cfg,$(SIMCLR_SETTINGS))

ifneq ($(strip $(SIMCLR_IMAGES)),)
$(call settings,$(SIMCLR_WORK)/cfg/images.cfg,images=$(SIMCLR_IMAGES) resize=$(SIMCLR_RESIZE) crop=$(SIMCLR_CROP) \
  crops=$(SIMCLR_CROPS) area=$(SIMCLR_CROP_AREA) seed=$(SEED) data=$(foreach d,$(SIMCLR_IMAGES),$(call fingerprint,$(d))))
$(SIMCLR_WORK)/images.tsz: $(SIMCLR_WORK)/cfg/images.cfg $(BIN)/img2tensor
	$(call say,SimCLR: decoding images)
	@mkdir -p $(@D)
	$(RUN) $(BIN)/img2tensor --u8 --no-labels --resize $(SIMCLR_RESIZE) $(if $(SIMCLR_CENTRE),--crop $(SIMCLR_CROP)) \
	  -j $(THREADS) -o $@ $(SIMCLR_IMAGES)
# Random crops as the demo's: augment's SimCLR policy with everything but the crop (and flip) off.
$(SIMCLR_WORK)/crops.tsz: $(SIMCLR_WORK)/images.tsz $(BIN)/augment
	$(call say,SimCLR: $(SIMCLR_CROPS) random crops of each image)
	$(RUN) $(BIN)/augment --policy simclr --views $(SIMCLR_CROPS) --size $(SIMCLR_CROP) --scale $(SIMCLR_CROP_AREA) \
	  --jitter 0 --gray 0 --blur 0 --u8 --seed $(SEED) -j $(THREADS) -o $@ $<
else ifneq ($(filter $(SIMCLR_WORK)/images.tsz $(SIMCLR_WORK)/crops.tsz,$(SIMCLR_TSZ)),)
$(SIMCLR_TSZ):
	@echo "simclr.mk: set SIMCLR_IMAGES=DIR (JPEG/PNG images) or SIMCLR_TSZ=STREAM (see $(PIPELINES)/simclr.mk)" >&2; exit 1
endif

# Under MPIRUN every rank runs its own augment (the same stream: same seed) into its own pipe, since
# mpirun would give a pipe into it to rank 0 only; each rank trains on its pairs of every batch.
SIMCLR_AUGMENT = $(BIN)/augment --policy simclr --views 2 --epochs $(SIMCLR_EPOCHS) --shuffle --size $(SIMCLR_SIZE) \
  --seed $(SEED) -j 1 $(SIMCLR_AUG_OPTS) $<
SIMCLR_TRAIN = $(BIN)/simclr-train --arch $(ARCH) --width $(WIDTH) --stem $(SIMCLR_STEM) --batch $(SIMCLR_BATCH) \
  $(if $(SIMCLR_LR),--lr $(SIMCLR_LR)) $(if $(SIMCLR_TEMP),--temperature $(SIMCLR_TEMP)) --seed $(SEED) \
  -j $(THREADS) --log $(SIMCLR_WORK)/train.tsv $(SIMCLR_OPTS) -o $@ $(RESUME) -

$(SIMCLR_MODEL): $(SIMCLR_TSZ) $(SIMCLR_WORK)/cfg/train.cfg $(BIN)/augment $(BIN)/simclr-train
	$(call say,SimCLR pre-training: $(ARCH) width $(WIDTH)$(,) $(SIMCLR_EPOCHS) epochs)
ifeq ($(strip $(MPIRUN)),)
	$(SIMCLR_AUGMENT) | $(RUN) $(SIMCLR_TRAIN)
else
	$(RUN) $(MPIRUN) sh -c '$(SIMCLR_AUGMENT) | $(SIMCLR_TRAIN)'
endif

.PHONY: simclr
simclr: $(SIMCLR_MODEL)

endif # EARSIGHT_SIMCLR_MK

# Standalone: the default goal is the encoder.
ifeq ($(notdir $(firstword $(MAKEFILE_LIST))),simclr.mk)
.DEFAULT_GOAL := simclr
endif
