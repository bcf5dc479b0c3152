# keng — build, run, test. Objects under build/, binaries build/kengd and build/keng.
# `make run` and `make test` install what is missing first (make deps).

PKGS      := libuv libcurl sqlite3 libturbojpeg libcjson openssl libpng
DEB_PKGS  := build-essential pkg-config libuv1-dev libcurl4-openssl-dev libcjson-dev \
             libsqlite3-dev libturbojpeg0-dev libhttp-parser-dev libssl-dev libpng-dev \
             curl python3 python3-aiosmtpd libjpeg-turbo-progs libxml2-utils nginx-light
BENCH_PKGS := wrk nginx-light libvips-tools imagemagick
FUZZ_PKGS  := clang libclang-rt-14-dev

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) $(SAN) -Iinclude -Itests -MMD -MP
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm -lpthread
CFLAGS  = $(CFLAGS_BASE) $(PKG_CFLAGS)
LDFLAGS = $(SAN)

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
UNIT_SRC := tests/runner.c $(wildcard tests/unit/*.c)
E2E_SRC  := tests/runner.c tests/e2e_util.c $(wildcard tests/e2e/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
E2E_OBJ  := $(E2E_SRC:%.c=$(BUILD)/%.o)

.PHONY: all run test check asan bench fuzz clean deps bench-deps

all: $(BUILD)/kengd $(BUILD)/keng $(BUILD)/test_unit $(BUILD)/test_e2e

$(BUILD)/libkeng.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kengd: $(BUILD)/src/main.o $(BUILD)/libkeng.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/keng: $(CLI_OBJ) $(BUILD)/libkeng.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/test_unit: $(UNIT_OBJ) $(BUILD)/libkeng.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/test_e2e: $(E2E_OBJ) $(BUILD)/libkeng.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

deps:
	@sh tools/deps.sh $(DEB_PKGS)

bench-deps:
	@sh tools/deps.sh $(BENCH_PKGS)

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/kengd $(BUILD)/keng
	@mkdir -p var
	./$(BUILD)/kengd --listen 127.0.0.1:8080 --data var --groups groups --templates templates \
	    --public-url http://127.0.0.1:8080

# Unit + end-to-end, then end-to-end again under ASan + UBSan; one closing total line.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    build/asan/kengd build/asan/keng build/asan/test_e2e
	@sh tests/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" all

bench: deps bench-deps all
	@sh bench/run.sh

fuzz:
	@sh tools/deps.sh $(FUZZ_PKGS)
	@$(MAKE) --no-print-directory -f tests/fuzz/Makefile

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(E2E_OBJ:.o=.d) $(BUILD)/src/main.d
