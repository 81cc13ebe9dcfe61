# supervised.mk: supervised pre-training of an encoder on labelled natural images (the paper's
# "supervised ImageNet" row, on whatever labelled image set you have):
#   img2tensor --u8 (labels from ImageFolder directory names) -> finetune -> encoder model
# Run it alone:  make -f pipelines/supervised.mk SUP_IMAGES=DIR [knobs]   (writes $(SUP_MODEL))
# or let esc50.mk/us8k.mk/gtzan.mk include it (they do when SUP_IMAGES is set and SUPERVISED_INIT
# is not).  With torchvision's ImageNet weights, pass SUPERVISED_INIT=resnet50.pth instead.
#
# Knobs:
#   SUP_IMAGES      the ImageFolder root: SUP_IMAGES/<class>/<image>.{jpg,png}
#   SUP_WORK        work directory (default work/supervised); the encoder is $(SUP_WORK)/encoder.tsz
#   SUP_RESIZE SUP_CROP   img2tensor: shorter side, then centre crop (72, 64)
#   SUP_EPOCHS SUP_BATCH SUP_LR   finetune --epochs (30), --batch (128), --lr (1e-3)
#   SUP_STEM        --stem (small, as SimCLR's for small images)
#   SUP_OPTS        further finetune options
#   ARCH WIDTH WD SEED THREADS BIN   as in common.mk

ifndef EARSIGHT_SUPERVISED_MK
EARSIGHT_SUPERVISED_MK := 1

include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

SUP_IMAGES ?=
SUP_WORK   ?= work/supervised
SUP_RESIZE ?= 72
SUP_CROP   ?= 64
SUP_EPOCHS ?= 30
SUP_BATCH  ?= 128
SUP_LR     ?= 1e-3
SUP_STEM   ?= $(STEM)
SUP_OPTS   ?=
SUP_MODEL  := $(SUP_WORK)/encoder.tsz

$(call settings,$(SUP_WORK)/cfg/images.cfg,images=$(SUP_IMAGES) resize=$(SUP_RESIZE) crop=$(SUP_CROP) \
  data=$(call fingerprint,$(SUP_IMAGES)))
SUP_SETTINGS := arch=$(ARCH) width=$(WIDTH) stem=$(SUP_STEM) resize=$(SUP_RESIZE) crop=$(SUP_CROP) epochs=$(SUP_EPOCHS) \
  batch=$(SUP_BATCH) lr=$(SUP_LR) wd=$(WD) seed=$(SEED) opts=$(SUP_OPTS)$(MPIRUN_SETTING)
$(call settings,$(SUP_WORK)/cfg/train.cfg,$(SUP_SETTINGS))

$(SUP_WORK)/images.tsz: $(SUP_WORK)/cfg/images.cfg $(BIN)/img2tensor
	$(call say,supervised pre-training: decoding images)
	@test -n $(call sq,$(SUP_IMAGES)) || { echo "supervised.mk: set SUP_IMAGES=DIR (an ImageFolder tree)" >&2; exit 1; }
	@mkdir -p $(@D)
	$(RUN) $(BIN)/img2tensor --u8 --resize $(SUP_RESIZE) --crop $(SUP_CROP) -j $(THREADS) -o $@ $(SUP_IMAGES)

$(SUP_MODEL): $(SUP_WORK)/images.tsz $(SUP_WORK)/cfg/train.cfg $(BIN)/finetune
	$(call say,supervised pre-training: $(ARCH) width $(WIDTH)$(,) $(SUP_EPOCHS) epochs)
	$(RUN) $(MPIRUN) $(BIN)/finetune --arch $(ARCH) --width $(WIDTH) --stem $(SUP_STEM) --epochs $(SUP_EPOCHS) \
	  --batch $(SUP_BATCH) --lr $(SUP_LR) --wd $(WD) --seed $(SEED) -j $(THREADS) \
	  --log $(SUP_WORK)/train.tsv $(SUP_OPTS) -o $@ $(RESUME) $<

.PHONY: supervised
supervised: $(SUP_MODEL)

endif # EARSIGHT_SUPERVISED_MK

ifeq ($(notdir $(firstword $(MAKEFILE_LIST))),supervised.mk)
.DEFAULT_GOAL := supervised
endif
