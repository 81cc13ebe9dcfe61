# common.mk: knobs and rules shared by the earsight k-fold pipelines (esc50.mk, us8k.mk, gtzan.mk,
# demo.mk include it).  A dataset file sets DATASET, its fold list and a rule for $(MEL), the labelled
# spectrogram stream; everything after that -- fold splits, fine-tuning and linear evaluation of each
# method, logits, scores, t-SNE and confusion pictures, paired comparisons and table.md -- is here.
#
# Layout (relative to the directory make runs in):
#   $(WORK)/mel.tsz                          spectrograms of the whole dataset (wav2mel)
#   $(WORK)/split/foldK/{train,test}.tsz     tsz select --fold K --invert / --fold K
#   $(WORK)/norm/foldK/{train,test}.tsz      the same scaled for transfer (tsz norm; INPUT_NORM)
#   $(WORK)/RUN/foldK/model.tsz, log.tsv     one trained model per run and test fold
#   $(OUT)/RUN/foldK.logits.tsz              embed --logits on the test fold
#   $(OUT)/RUN/score.txt, score.csv          score over all folds (per fold, mean +- sd)
#   $(OUT)/RUN/confusion.png, tsne.png       score --png; tsne --png of test-fold TSNE_FOLD features
#   $(OUT)/compare-A-vs-B.txt                score --compare A... -- B... (same folds, same clips)
#   $(OUT)/table.md                          the paper's two tables with our numbers and the settings
# RUN is ft-METHOD (fine-tuning) or lin-METHOD (linear evaluation: frozen encoder, new linear head);
# METHOD is vanilla (from scratch / random encoder), simclr or supervised.
#
# Knobs (make VAR=value; each is recorded in a settings file under $(WORK)/cfg that is rewritten only
# when its content changes, so changing a knob re-runs exactly the steps that depend on it):
#   BIN            directory of the earsight tools (default: build/bin of this checkout)
#   ARCH WIDTH STEM                 network: resnet18|resnet34|resnet50, base width, imagenet|small
#   EPOCHS BATCH LR WD SEED FT_OPTS fine-tuning (finetune); FT_OPTS: any further finetune options
#   LIN_EPOCHS LIN_LR LIN_OPTS      linear evaluation (finetune --freeze-backbone)
#   FOLDS          test folds to run (a list; default: every fold of the dataset)
#   FT_METHODS LIN_METHODS          methods to run (default: vanilla plus each available encoder)
#   SIMCLR_INIT SUPERVISED_INIT     a published checkpoint (.pth/.safetensors/.tsz) as that encoder
#   SIMCLR_IMAGES                   images for our own SimCLR pre-training (see simclr.mk)
#   SUP_IMAGES                      an ImageFolder tree for our own supervised pre-training (supervised.mk)
#   INIT_OPTS                       further finetune options whenever an encoder is loaded
#   MEL_OPTS                        wav2mel options (each dataset file sets its preset)
#   TRAIN_PER_CLASS                 keep only K training clips per class and fold (label-scarce regime)
#   INNER_FOLDS    1: recipe selection without the test folds -- run K trains on the folds other than K
#                  and K+1 (5 -> 1) and is tested on fold K+1; fold K is never read (use another WORK/OUT)
#   INPUT_NORM NORM_LIKE NORM_OPTS  input scaling for transfer (tsz norm, below): like (default when our
#                  own pre-training images NORM_LIKE exist), target (NORM_OPTS, default --mean 0 --std 1)
#                  or none
#   COMPARE                         paired comparisons A:B to run (when both runs exist)
#   TSNE_FOLD TSNE_OPTS             fold whose test features t-SNE draws; tsne options
#   PAPER                           the paper's numbers shown in table.md (pipelines/paper.tsv)
#   THREADS        threads per tool (default: cores / make jobs, see below)
#   MPIRUN         a launcher put in front of the trainers (finetune, simclr-train) for data-parallel
#                  training, e.g. MPIRUN='mpirun -np 4' or 'srun' (see finetune(1), DATA-PARALLEL
#                  TRAINING); THREADS is then per rank (MPIRUN='mpirun -np 2' THREADS=1 on two cores).
#                  Part of the settings: per-rank batch norm depends on the number of ranks.
#
# Threads: `make -jN` runs up to N tools at once; each gets -j THREADS with THREADS = max(1, cores/N)
# (cores from nproc; plain `make` is N = 1, `make -j` without a number counts as N = cores), so N jobs
# never ask for more threads than there are cores.  In a pipe (augment | simclr-train) the trainer
# gets THREADS and augment one thread.  Set THREADS=n to override.  Results do not depend on it:
# every tool computes the same numbers for any thread count, so -j2 and -j1 give identical tables
# (tests/pipelines_test.sh checks it).  Small networks run better as N single-threaded jobs.
# Data directories are fingerprinted (names, sizes, modification times) when make starts, so that
# new or changed files re-run what they feed; on a very large image tree that takes a few seconds.

ifndef EARSIGHT_COMMON_MK
EARSIGHT_COMMON_MK := 1

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:

PIPELINES := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ES_ROOT   := $(abspath $(PIPELINES)/..)
ifeq ($(SAN),1)
BIN ?= $(ES_ROOT)/build-san/bin
else
BIN ?= $(ES_ROOT)/build/bin
endif

# ---- knobs shared by every pipeline ----
ARCH    ?= resnet18
WIDTH   ?= 64
STEM    ?= imagenet
EPOCHS  ?= 70
BATCH   ?= 32
LR      ?= 1e-4
WD      ?= 1e-3
SEED    ?= 1
FT_OPTS ?=
LIN_EPOCHS ?= $(EPOCHS)
LIN_LR  ?= 1e-3
LIN_OPTS ?=
TSNE_OPTS ?= --seed $(SEED)
SIMCLR_INIT ?=
SUPERVISED_INIT ?=
INIT_OPTS ?=

# ---- threads (evaluated when a recipe runs: MAKEFLAGS carries -jN only then) ----
NPROC := $(shell nproc 2>/dev/null || echo 1)
MAKE_JOBS = $(strip $(if $(filter -j,$(MAKEFLAGS)),$(NPROC),$(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),1)))
THREADS ?= $(shell j=$(MAKE_JOBS); t=$$(( $(NPROC) / j )); [ $$t -ge 1 ] || t=1; echo $$t)
# Tools take -j THREADS; the environment caps BLIS and OpenMP the same way for anything they spawn.
RUN = OMP_NUM_THREADS=$(THREADS) BLIS_NUM_THREADS=$(THREADS)
# data parallel: the launcher before each trainer (empty: one process), recorded with the settings
MPIRUN ?=
MPIRUN_SETTING = $(if $(strip $(MPIRUN)), mpirun=$(MPIRUN))

# ---- helpers ----
, := ,
# $(call settings,FILE,TEXT): make FILE hold TEXT, rewriting it only when it differs (parse time).
# Under make -n or -q nothing is written: a FILE that would change is forced out of date instead.
sq = '$(subst ','\'',$(1))'
MAKE_LETTERS := $(filter-out -%,$(firstword $(MAKEFLAGS)))
DRY_RUN := $(if $(or $(findstring n,$(MAKE_LETTERS)),$(findstring q,$(MAKE_LETTERS))),1)
settings_same = $(shell [ -f $(1) ] && [ "$$(cat $(1))" = $(call sq,$(2)) ] && echo same)
settings = $(if $(DRY_RUN),$(if $(call settings_same,$(1),$(2)),,$(eval $(1): .earsight-force ;)),$(shell \
  mkdir -p $(dir $(1)) && t=$(call sq,$(2)); \
  if [ ! -f $(1) ] || [ "$$(cat $(1))" != "$$t" ]; then printf '%s\n' "$$t" > $(1).tmp && mv $(1).tmp $(1); fi))
.PHONY: .earsight-force
.earsight-force: ;
# A cheap fingerprint of a directory tree or file (names, sizes, mtimes), so new data re-runs.
fingerprint = $(shell if [ -e $(call sq,$(1)) ]; then find -L $(call sq,$(1)) -printf '%P %s %T@\n' 2>/dev/null | LC_ALL=C sort | cksum | cut -d' ' -f1; else echo absent; fi)
# A heading on stderr before a long step (the tools show their own progress on a terminal).
say = @printf '\n== %s\n' $(call sq,$(1)) >&2

# Trainers (finetune, simclr-train) checkpoint to TARGET.ckpt (TARGET without .tsz) as they go: an
# interrupted run resumes from it, unless a prerequisite (data, encoder, settings, the tool itself)
# changed after the checkpoint was written, in which case the checkpoint is deleted (not under make -n).
CKPT = $(@:.tsz=.ckpt)
RESUME = --checkpoint $(CKPT)$(if $(wildcard $(CKPT)),$(if $(shell find $^ -newer $(CKPT) 2>/dev/null),$(if $(DRY_RUN),,$(shell rm -f $(CKPT))), --resume))

$(BIN)/%:
	@echo "pipelines: $@ does not exist: run 'make' in $(ES_ROOT) first (or set BIN=)" >&2; exit 1

endif # EARSIGHT_COMMON_MK

# =====================================================================================================
# The k-fold experiment.  The including file has set DATASET, OUT, WORK, ALL_FOLDS, MEL and a rule
# for $(MEL) (which should depend on $(CFG)/mel.cfg).  It may set DATASET_TITLE.
# =====================================================================================================
ifdef DATASET
ifndef EARSIGHT_KFOLD_$(DATASET)
EARSIGHT_KFOLD_$(DATASET) := 1

CFG   := $(WORK)/cfg
FOLDS ?= $(ALL_FOLDS)
TSNE_FOLD ?= $(firstword $(FOLDS))
DATASET_TITLE ?= $(DATASET)

# Encoders: a published checkpoint wins; else our own pre-training when its images are given.
ENC_vanilla :=
ifneq ($(strip $(SIMCLR_INIT)),)
ENC_simclr := $(SIMCLR_INIT)
else ifneq ($(strip $(SIMCLR_IMAGES)$(SIMCLR_TSZ)),)
include $(PIPELINES)/simclr.mk
ENC_simclr := $(SIMCLR_MODEL)
endif
ifneq ($(strip $(SUPERVISED_INIT)),)
ENC_supervised := $(SUPERVISED_INIT)
else ifneq ($(strip $(SUP_IMAGES)),)
include $(PIPELINES)/supervised.mk
ENC_supervised := $(SUP_MODEL)
endif
AVAILABLE := vanilla $(if $(ENC_simclr),simclr) $(if $(ENC_supervised),supervised)
FT_METHODS  ?= $(AVAILABLE)
LIN_METHODS ?= $(AVAILABLE)
RUNS := $(addprefix ft-,$(FT_METHODS)) $(addprefix lin-,$(LIN_METHODS))
# Paired comparisons A:B (A... -- B...), kept when both runs exist.
COMPARE ?= ft-simclr:ft-vanilla ft-supervised:ft-vanilla ft-simclr:ft-supervised lin-simclr:lin-vanilla lin-supervised:lin-vanilla
COMPARISONS := $(strip $(foreach c,$(COMPARE),$(if $(and $(filter $(word 1,$(subst :, ,$(c))),$(RUNS)),$(filter $(word 2,$(subst :, ,$(c))),$(RUNS))),$(c))))

# Settings files: what each step's result depends on besides its input files.
FT_SETTINGS  := arch=$(ARCH) width=$(WIDTH) stem=$(STEM) epochs=$(EPOCHS) batch=$(BATCH) lr=$(LR) wd=$(WD) seed=$(SEED) opts=$(FT_OPTS)$(MPIRUN_SETTING)
LIN_SETTINGS := arch=$(ARCH) width=$(WIDTH) stem=$(STEM) epochs=$(LIN_EPOCHS) batch=$(BATCH) lr=$(LIN_LR) wd=$(WD) seed=$(SEED) opts=$(LIN_OPTS)$(MPIRUN_SETTING)
$(call settings,$(CFG)/ft.cfg,$(FT_SETTINGS))
$(call settings,$(CFG)/lin.cfg,$(LIN_SETTINGS))
$(call settings,$(CFG)/tsne.cfg,fold=$(TSNE_FOLD) opts=$(TSNE_OPTS))
$(foreach m,simclr supervised,$(call settings,$(CFG)/enc-$(m).cfg,$(ENC_$(m)) $(INIT_OPTS) $(INIT_OPTS_$(m))))
$(call settings,$(CFG)/enc-vanilla.cfg,none)
$(call settings,$(CFG)/runs.cfg,folds=$(FOLDS) runs=$(RUNS) compare=$(COMPARISONS))

.PHONY: all table clean-results
all: $(OUT)/table.md
table: $(OUT)/table.md

# ---- folds ----
# TRAIN_PER_CLASS=K keeps K training clips of each class per fold (drawn with SEED; the test fold stays
# whole): the label-scarce regime, where pre-training is expected to matter most.
TRAIN_PER_CLASS ?=
# INNER_FOLDS=1: the "test" fold of run K is the next fold (inner validation), and K is held out.
INNER_FOLDS ?=
ifeq ($(strip $(INNER_FOLDS)),1)
inner_fold = $(word $(1),$(wordlist 2,$(words $(ALL_FOLDS)),$(ALL_FOLDS)) $(firstword $(ALL_FOLDS)))
train_folds = $(1),$(call inner_fold,$(1))
test_fold = $(call inner_fold,$(1))
else ifeq ($(strip $(INNER_FOLDS)),)
train_folds = $(1)
test_fold = $(1)
else
$(error INNER_FOLDS must be 1 or empty, not '$(INNER_FOLDS)')
endif
$(call settings,$(CFG)/split.cfg,per_class=$(TRAIN_PER_CLASS) seed=$(if $(TRAIN_PER_CLASS),$(SEED)) inner=$(INNER_FOLDS))
$(WORK)/split/fold%/train.tsz: $(MEL) $(CFG)/split.cfg $(BIN)/tsz
	@mkdir -p $(@D)
ifeq ($(strip $(TRAIN_PER_CLASS)),)
	$(BIN)/tsz select --fold $(call train_folds,$*) --invert -o $@ $<
else
	$(BIN)/tsz select --fold $(call train_folds,$*) --invert $< | $(BIN)/tsz shuffle --seed $(SEED) -o $(@D)/all.tsz
	for c in $$($(BIN)/tsz info --list --no-values $(@D)/all.tsz | awk '$$4 == "label" { print $$5 }' | sort -n -u); do \
	  $(BIN)/tsz select --label $$c -o $(@D)/class.tsz $(@D)/all.tsz && $(BIN)/tsz head -n $(TRAIN_PER_CLASS) $(@D)/class.tsz; \
	done | $(BIN)/tsz cat -o $@
	rm -f $(@D)/all.tsz $(@D)/class.tsz
endif
$(WORK)/split/fold%/test.tsz: $(MEL) $(CFG)/split.cfg $(BIN)/tsz
	@mkdir -p $(@D)
	$(BIN)/tsz select --fold $(call test_fold,$*) -o $@ $<

# ---- input scaling for transfer ----
# A pre-trained encoder learnt its filters and batch-norm statistics on images in [0, 1]; log-mel
# spectrograms (about -14 ... 12) meet neither.  So each fold's spectrograms are scaled channel by channel
# (tsz norm) with statistics of its training fold alone -- the test fold is never looked at -- to the
# channel statistics of the pre-training images (like) or to NORM_OPTS (target), and every method,
# from scratch included, trains and is tested on the same scaled inputs, so comparisons stay fair.
NORM_LIKE  ?= $(SIMCLR_TSZ)
INPUT_NORM ?= $(if $(strip $(NORM_LIKE)),like,none)
NORM_OPTS  ?= --mean 0 --std 1
ifeq ($(INPUT_NORM),none)
IN := $(WORK)/split
else ifeq ($(INPUT_NORM),like)
IN := $(WORK)/norm
NORM_ARGS := --like $(NORM_LIKE)
NORM_DEPS := $(NORM_LIKE)
else ifeq ($(INPUT_NORM),target)
IN := $(WORK)/norm
NORM_ARGS := $(NORM_OPTS)
else
$(error INPUT_NORM must be like, target or none, not '$(INPUT_NORM)')
endif
$(call settings,$(CFG)/norm.cfg,norm=$(INPUT_NORM) args=$(NORM_ARGS))
$(WORK)/norm/fold%/train.tsz $(WORK)/norm/fold%/test.tsz: $(WORK)/split/fold%/train.tsz $(WORK)/split/fold%/test.tsz $(NORM_DEPS) $(CFG)/norm.cfg $(BIN)/tsz
	@mkdir -p $(@D)
	$(BIN)/tsz norm --fit $< $(NORM_ARGS) -o $(@D)/train.tsz $<
	$(BIN)/tsz norm --fit $< $(NORM_ARGS) -o $(@D)/test.tsz $(word 2,$^)

# ---- one run (fine-tuning or linear evaluation of one method) over every fold ----
# $(1) run name (ft-vanilla), $(2) method (vanilla), $(3) settings file, $(4) extra finetune options
define RUN_template
$(WORK)/$(1)/fold%/model.tsz: $(IN)/fold%/train.tsz $(ENC_$(2)) $(3) $(CFG)/enc-$(2).cfg $(BIN)/finetune
	$$(call say,$(DATASET) fold $$*: $(1))
	@mkdir -p $$(@D)
	$$(RUN) $(MPIRUN) $(BIN)/finetune $(4) $(if $(ENC_$(2)),--init $(ENC_$(2)) $(INIT_OPTS) $(INIT_OPTS_$(2))) \
	  --seed $(SEED) -j $$(THREADS) --log $$(@D)/log.tsv -o $$@ $$(RESUME) $$<
$(OUT)/$(1)/fold%.logits.tsz: $(WORK)/$(1)/fold%/model.tsz $(IN)/fold%/test.tsz $(BIN)/embed
	@mkdir -p $$(@D)
	$$(RUN) $(BIN)/embed --logits -j $$(THREADS) --model $$< -o $$@ $$(word 2,$$^)
$(WORK)/$(1)/fold%/features.tsz: $(WORK)/$(1)/fold%/model.tsz $(IN)/fold%/test.tsz $(BIN)/embed
	$$(RUN) $(BIN)/embed -j $$(THREADS) --model $$< -o $$@ $$(word 2,$$^)
$(OUT)/$(1)/tsne.png: $(WORK)/$(1)/fold$(TSNE_FOLD)/features.tsz $(CFG)/tsne.cfg $(BIN)/tsne
	@mkdir -p $$(@D)
	$$(RUN) $(BIN)/tsne $(TSNE_OPTS) -j $$(THREADS) --title $(call sq,$(DATASET_TITLE): $(1)$(,) test fold $(TSNE_FOLD)) \
	  --png $$@ -o $(WORK)/$(1)/tsne.tsz $$<
$(OUT)/$(1)/score.txt: $(foreach k,$(FOLDS),$(OUT)/$(1)/fold$(k).logits.tsz) $(CFG)/runs.cfg $(BIN)/score
	$(BIN)/score $$(filter %.logits.tsz,$$^) > $$@.tmp && mv $$@.tmp $$@
$(OUT)/$(1)/score.csv: $(foreach k,$(FOLDS),$(OUT)/$(1)/fold$(k).logits.tsz) $(CFG)/runs.cfg $(BIN)/score
	$(BIN)/score --csv $$(filter %.logits.tsz,$$^) > $$@.tmp && mv $$@.tmp $$@
$(OUT)/$(1)/confusion.png: $(foreach k,$(FOLDS),$(OUT)/$(1)/fold$(k).logits.tsz) $(CFG)/runs.cfg $(BIN)/score
	$(BIN)/score --png $$@ --title $(call sq,$(DATASET_TITLE): $(1)$(,) $(words $(FOLDS)) folds) $$(filter %.logits.tsz,$$^) > /dev/null
endef

FT_ARGS  = --arch $(ARCH) --width $(WIDTH) --stem $(STEM) --epochs $(EPOCHS) --batch $(BATCH) --lr $(LR) --wd $(WD) $(FT_OPTS)
LIN_ARGS = --arch $(ARCH) --width $(WIDTH) --stem $(STEM) --epochs $(LIN_EPOCHS) --batch $(BATCH) --lr $(LIN_LR) --wd $(WD) --freeze-backbone $(LIN_OPTS)
$(foreach m,$(FT_METHODS),$(eval $(call RUN_template,ft-$(m),$(m),$(CFG)/ft.cfg,$(FT_ARGS))))
$(foreach m,$(LIN_METHODS),$(eval $(call RUN_template,lin-$(m),$(m),$(CFG)/lin.cfg,$(LIN_ARGS))))

# ---- paired comparisons ----
define COMPARE_template
$(OUT)/compare-$(1)-vs-$(2).%: $(foreach k,$(FOLDS),$(OUT)/$(1)/fold$(k).logits.tsz $(OUT)/$(2)/fold$(k).logits.tsz) $(CFG)/runs.cfg $(BIN)/score
	$(BIN)/score --compare $$(if $$(filter %.csv,$$@),--csv) --seed $(SEED) \
	  $(foreach k,$(FOLDS),$(OUT)/$(1)/fold$(k).logits.tsz) -- \
	  $(foreach k,$(FOLDS),$(OUT)/$(2)/fold$(k).logits.tsz) > $$@.tmp && mv $$@.tmp $$@
endef
$(foreach c,$(COMPARISONS),$(eval $(call COMPARE_template,$(word 1,$(subst :, ,$(c))),$(word 2,$(subst :, ,$(c))))))

# ---- the table ----
ENC_DESC_simclr = $(if $(SIMCLR_INIT),the checkpoint `$(SIMCLR_INIT)`,SimCLR pre-training on $(or $(SIMCLR_IMAGES),$(SIMCLR_TSZ)) (`$(SIMCLR_MODEL)`): `$(SIMCLR_SETTINGS)`)
ENC_DESC_supervised = $(if $(SUPERVISED_INIT),the checkpoint `$(SUPERVISED_INIT)`,supervised pre-training on $(SUP_IMAGES) (`$(SUP_MODEL)`): `$(SUP_SETTINGS)`)
PAPER ?= $(PIPELINES)/paper.tsv
TABLE_INPUTS := $(foreach r,$(RUNS),$(OUT)/$(r)/score.csv $(OUT)/$(r)/score.txt $(OUT)/$(r)/confusion.png $(OUT)/$(r)/tsne.png) \
  $(foreach c,$(COMPARISONS),$(OUT)/compare-$(subst :,-vs-,$(c)).txt $(OUT)/compare-$(subst :,-vs-,$(c)).csv)
$(OUT)/table.md: $(TABLE_INPUTS) $(wildcard $(CFG)/*.cfg) $(PIPELINES)/table.sh $(PAPER)
	@mkdir -p $(@D)
	DATASET=$(call sq,$(DATASET)) TITLE=$(call sq,$(DATASET_TITLE)) OUT=$(call sq,$(OUT)) CFG=$(call sq,$(CFG)) \
	  FOLDS=$(call sq,$(FOLDS)) RUNS=$(call sq,$(RUNS)) COMPARISONS=$(call sq,$(COMPARISONS)) PAPER=$(call sq,$(PAPER)) \
	  $(foreach m,simclr supervised,$(if $(ENC_$(m)),ENC_DESC_$(m)=$(call sq,$(ENC_DESC_$(m))))) \
	  sh $(PIPELINES)/table.sh > $@.tmp && mv $@.tmp $@

clean-results:
	rm -rf $(OUT) $(filter-out $(CFG),$(wildcard $(WORK)/*))

endif # EARSIGHT_KFOLD_$(DATASET)
endif # DATASET
