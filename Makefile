# `make run EXTRA_WASM="a.wasm b.wasm"` adds those files to the image's wasm directory (imgtool reads it).
export EXTRA_WASM
# Delos: thin targets; the work is in tools/.
#   make run            build and boot (qemu -kernel, TCG; KVM=1 for KVM, ISO=1 for the GRUB ISO)
#   make test           host tests + QEMU tests (what CI runs)
#   make session SCRIPT=FILE   boot, type FILE's lines, print the log; exit 0 only on kernel success
#   make bench          boot-time and loader benchmarks
#   make iso            GRUB multiboot2 ISO in target/image/delos.iso (CMDLINE="..." for options)
#   make check          fmt, clippy, host tests (mirrors CI's host part)
#   make fuzz           mutation fuzzing of the object loader (FUZZ_ITERS=N)
#   make gdb            QEMU with the gdb stub, and gdb attached
#   make faults         fault-injection campaign (bit flips in a running task; not in CI; FAULTS_SMP=2: the workload on an AP)
#   make swapstorm [MINUTES=N]   random swaps of every crate under load for N minutes (default 10)
#   make push CRATE=DIR [NS=applications]   build DIR's crate like the image and send it to the running kernel
#   make push C=prog.o | WASM=f.wasm | FILE=any   send that file (signed) to the running kernel's updates
#   make cobj SRC="a.c [b.c ...]"   compile (and ld -r) a C program for loadc into target/c/a.o
.PHONY: setup tools image run iso test check bench session fuzz gdb push cobj faults swapstorm clean

CMDLINE ?=
KVM ?=
ISO ?=
SCRIPT ?=
FUZZ_ITERS ?= 20000
RUNNER := python3 tools/runner/qemu_run.py
IMAGE := target/image
NS ?= applications
# CPUs for `make run` (default: the host's). The APs are started and parked; tasks run on CPU 0.
SMP ?= $(shell nproc)
RUN_ARGS := $(if $(KVM),--kvm,) $(if $(ISO),--iso $(IMAGE)/delos.iso,--kernel $(IMAGE)/nano_core --modules $(IMAGE)/modules.tar --append "$(CMDLINE)") --push-socket target/push.sock --qemu-arg=-smp --qemu-arg=$(SMP)

setup:
	@bash tools/setup.sh

tools: setup
	@cargo build --release -q -p imgtool -p modtool

image: tools
	@./target/release/imgtool build

iso: image
	@./target/release/imgtool iso --cmdline "$(CMDLINE)" --out $(IMAGE)/delos.iso

run: image $(if $(ISO),iso,)
	@$(RUNNER) --interactive $(RUN_ARGS)

session: image $(if $(ISO),iso,)
	@test -n "$(SCRIPT)" || { echo "usage: make session SCRIPT=FILE"; exit 2; }
	@$(RUNNER) $(RUN_ARGS) --script "$(SCRIPT)" --print-log --timeout 120

test: setup
	@bash tools/test.sh

check: setup
	@cargo fmt --all --check
	@cargo clippy -q -p boot_info -p leakcheck -p signing -p mod_mgmt -p path -p line_edit -p imgtool -p modtool -p objbuild --all-targets -- -D warnings
	@cargo clippy -q -p tlibc --no-default-features --all-targets -- -D warnings
	@bash tools/clippy-kernel.sh
	@bash tools/test.sh --host-only

bench: image
	@bash tools/bench.sh

fuzz: tools
	@cargo run --release -q -p modtool -- fuzz --iters $(FUZZ_ITERS)

push: tools
	@if [ -n "$(WASM)" ]; then python3 tools/push.py "$(WASM)" --namespace applications --name "$$(basename "$(WASM)")"; exit $$?; fi
	@f="$(or $(C),$(FILE))"; if [ -n "$$f" ]; then python3 tools/push.py "$$f" --namespace "$(NS)" --name "$$(basename "$$f")"; exit $$?; fi
	@test -n "$(CRATE)" || { echo "usage: make push CRATE=path/to/crate [NS=applications] | make push C=prog.o | make push WASM=file.wasm | make push FILE=file"; exit 2; }
	@obj=$$(./target/release/imgtool object "$(CRATE)") && python3 tools/push.py "$$obj" --namespace "$(NS)" --name "$$(basename "$(CRATE)").o"

cobj: tools
	@test -n "$(SRC)" || { echo "usage: make cobj SRC=\"prog.c [more.c ...]\""; exit 2; }
	@./target/release/imgtool cobj $(SRC)

faults: image
	@python3 tools/faults.py --manifested $(or $(FAULTS),300) --smp $(or $(FAULTS_SMP),1)

swapstorm: image
	@python3 tools/swapstorm.py --minutes $(or $(MINUTES),10)

gdb: image
	@bash tools/gdb.sh

clean:
	cargo clean
