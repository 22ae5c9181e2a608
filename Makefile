# darwinlm-go — see README.md. `make help` lists the targets.
SHELL   := bash
.SHELLFLAGS := -o pipefail -c
GO      ?= go
BIN     := bin/darwinlm
export DARWINLM_HUB_MIRROR ?= $(abspath ../shared/hf)

DEMO_MODEL ?= hf:raincandy-u/TinyStories-656K
DEMO_TEXT  ?= hf-dataset:roneneldan/TinyStories/default/validation_prefix

.PHONY: help build demo finetune test test-purego vet bench fuzz clean build-vulkan test-vulkan

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ux: the commit for --version where go build does not stamp it (-buildvcs=false, worktrees)
COMMIT  := $(shell git describe --always --dirty --abbrev=40 2>/dev/null)
build: ## build bin/darwinlm
	$(GO) build -ldflags "-X main.buildCommit=$(COMMIT)" -o $(BIN) ./cmd/darwinlm

demo: build ## load the default tiny model, generate a story, print its perplexity
	$(BIN) info
	$(BIN) generate --model $(DEMO_MODEL) --prompt "Once upon a time" --max-tokens 120
	$(BIN) ppl --model $(DEMO_MODEL) --text-file $(DEMO_TEXT) --seq-len 512
	$(BIN) ppl --model hf:karpathy/tinyllamas/stories260K/stories260K.bin --text-file $(DEMO_TEXT) --seq-len 512

finetune: build ## fine-tune the default model on 100k tokens and compare held-out perplexity
	$(BIN) ppl --quiet --model $(DEMO_MODEL) --text-file '$(DEMO_TEXT)[3300:]' --seq-len 256
	rm -rf results/runs/finetune
	$(BIN) train --quiet --model $(DEMO_MODEL) --data '$(DEMO_TEXT)[:3000]' --tokens 100000 --seq-len 256 \
	    --batch 8 --lr 2e-3 --schedule cosine --warmup 5 --clip 1 --seed 1 --out results/runs/finetune
	$(BIN) ppl --quiet --model results/runs/finetune/final --text-file '$(DEMO_TEXT)[3300:]' --seq-len 256

vet: ## go vet, default and purego builds
	$(GO) vet ./...
	$(GO) vet -tags purego ./...

test: vet ## the test suite (what CI runs); the default build is pure Go (CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) test -count=1 ./...
	$(GO) test -count=1 -tags purego ./backend/... ./model/...
	@if $(VULKAN_PRESENT); then $(MAKE) --no-print-directory test-vulkan; \
	 else echo "make test: skipping test-vulkan (needs gcc, libvulkan-dev and a Vulkan driver)"; fi

BENCH ?= .
bench: ## kernel, forward, training, evaluation benchmarks as a table (BENCH=regexp to select)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 3x ./bench/ ./nn/ ./eval/ ./tokenizer/ | $(GO) run ./bench/benchtable

fuzz: ## run each fuzz target for 30 s
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$pkg || exit 1; \
	  done; done

# --- Vulkan GPU backend (backend/vulkan, shaders/) ---
# True when the cgo Vulkan build can link and a driver manifest exists.
# (ls fails on the missing candidates: `|| :` keeps pipefail from failing the test)
VULKAN_PRESENT = command -v gcc >/dev/null 2>&1 && \
  { ls /usr/lib/x86_64-linux-gnu/libvulkan.so /usr/lib/aarch64-linux-gnu/libvulkan.so /usr/lib64/libvulkan.so /usr/lib/libvulkan.so 2>/dev/null || :; } | grep -q . && \
  { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || :; } | grep -q .

build-vulkan: ## build bin/darwinlm-vulkan with the Vulkan GPU backend (cgo, libvulkan-dev)
	CGO_ENABLED=1 $(GO) build -tags vulkan -o bin/darwinlm-vulkan ./cmd/darwinlm

test-vulkan: ## Vulkan backend tests with the validation layer (lavapipe in CI: VK_DRIVER_FILES)
	CGO_ENABLED=1 $(GO) vet -tags vulkan ./backend/... ./shaders/... ./cmd/...
	CGO_ENABLED=1 $(GO) test -count=1 -tags vulkan ./backend/vulkan/

clean: ## remove build outputs
	rm -rf bin

# --- experiments ----------------------------------------
EXPERIMENTS := table1 table2 ablation-tas ablation-fitness ablation-stages
.PHONY: table1 table2 ablations tables paper
table1: build ## Table 1 at local scale (stories260K -> 40%), end to end, then the table
	$(BIN) run experiments/table1.yaml --profile local
	$(BIN) report experiments/table1.yaml --profile local --out results/table1/local > /dev/null

table2: build ## Table 2 at local scale (TinyStories-656K -> 57%), end to end, then the table (the main command)
	$(BIN) run experiments/table2.yaml --profile local
	$(BIN) report experiments/table2.yaml --profile local --out results/table2/local > /dev/null

ablations: build ## the ablations at local scale (training-aware selection, fitness, selection stages)
	for e in ablation-tas ablation-fitness ablation-stages; do \
	  $(BIN) run experiments/$$e.yaml --profile local --no-report && \
	  $(BIN) report experiments/$$e.yaml --profile local --out results/$$e/local || exit 1; done

tables: build ## every table and figure from the committed Parquet files only (seconds; no model is loaded)
	@for e in $(EXPERIMENTS); do \
	  if [ -f results/$$e/local/rows.parquet ]; then \
	    $(BIN) report experiments/$$e.yaml --profile local --out results/$$e/local > /dev/null || exit 1; \
	    echo "results/$$e/local/$$e-local.md"; fi; done

PAPER_MD ?= paper.md
paper: tables ## embed the rendered tables and figures in $(PAPER_MD) (between BEGIN/END markers)
	$(GO) run ./report/cmd/embed $(PAPER_MD) $(foreach e,$(EXPERIMENTS),results/$(e)/local/$(e)-local.md)

# --- shear (Sheared-LLaMA baseline) ---
.PHONY: shear
shear: build ## Sheared-LLaMA baseline: prune the default model to half its size, post-train, held-out perplexities
	rm -rf results/runs/shear results/runs/shear-post
	$(BIN) shear --quiet --model $(DEMO_MODEL) --data '$(DEMO_TEXT)[:3000]' --target-params 328000 --tokens 204800 \
	    --seq-len 128 --batch 2 --lr 1e-3 --lag-lr 1.0 --out results/runs/shear
	$(BIN) ppl --quiet --model results/runs/shear/model --text-file '$(DEMO_TEXT)[3300:]' --seq-len 256
	$(BIN) train --quiet --model results/runs/shear/model --data '$(DEMO_TEXT)[:3000]' --tokens 204800 --seq-len 256 \
	    --batch 8 --lr 2e-3 --schedule cosine --warmup 5 --clip 1 --seed 1 --out results/runs/shear-post
	$(BIN) ppl --quiet --model results/runs/shear-post/final --text-file '$(DEMO_TEXT)[3300:]' --seq-len 256

# --- prune: the figures of docs/pruning.md ---
PRUNE_CALIB ?= hf-dataset:roneneldan/TinyStories/default/validation_prefix
PRUNE_OUT   ?= results/runs/prune
.PHONY: prune-figures
prune-figures: build ## pruning databases of both tiny models; held-out ppl per uniform level and of DP at the same size
	@set -e; mkdir -p $(PRUNE_OUT); \
	for spec in hf:raincandy-u/TinyStories-656K hf:karpathy/tinyllamas/stories260K/stories260K.bin; do \
	  name=$$(basename $$spec .bin); db=$(PRUNE_OUT)/$$name-db; \
	  $(BIN) database --quiet --force --model $$spec --calib $(PRUNE_CALIB) --calib-tokens 16384 --seq-len 256 \
	      --sampler first --levels 10 --out $$db >/dev/null; \
	  for lv in 0 1 2 3 4 5 6 7 8 9; do \
	    for strat in uniform dp; do \
	      cfg=$(PRUNE_OUT)/$$name-$$strat$$lv.txt; \
	      if [ $$strat = uniform ]; then \
	        p=$$($(BIN) oneshot --database $$db --strategy uniform --level $$lv --out $$cfg | sed 's/.*"params":\([0-9]*\).*/\1/'); \
	      else \
	        $(BIN) oneshot --database $$db --strategy dp --target-params $$p --out $$cfg >/dev/null; fi; \
	      rm -rf $(PRUNE_OUT)/m; $(BIN) stitch --quiet --model $$spec --database $$db --levels $$cfg --out $(PRUNE_OUT)/m >/dev/null; \
	      ppl=$$($(BIN) ppl --quiet --model $(PRUNE_OUT)/m --text-file '$(PRUNE_CALIB)[3000:]' --seq-len 256 | sed 's/.*"ppl":\([0-9.e+]*\).*/\1/'); \
	      printf '%s\tlevel %s\t%s\tparams %s\tppl %s\t%s\n' $$name $$lv $$strat $$p $$ppl "$$(tr '\n' ' ' < $$cfg | sed 's/model.layers.//g')"; \
	    done; done; done; rm -rf $(PRUNE_OUT)/m

# --- evolve (search) ---
.PHONY: search-acceptance
search-acceptance: ## evolutionary-search acceptance run on stories260K (~15 min; results/runs/evolve-acceptance)
	$(GO) run ./evolve/acceptance -out results/runs/evolve-acceptance -generations 30
