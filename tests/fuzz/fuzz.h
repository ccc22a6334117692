/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every fuzz target in tests/fuzz provides and may use.  A target is
 * one fuzz_<name>.c with LLVMFuzzerInitialize() and
 * LLVMFuzzerTestOneInput(); it is linked either with libFuzzer (clang,
 * tests/fuzz/run.sh) or with replay.c, which feeds it the seed corpus under
 * `make check` with the normal compiler.  fuzz_util.c holds the helpers.
 */
#ifndef KUPROXY_FUZZ_H
#define KUPROXY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Called once before the first input; always returns 0. */
int	LLVMFuzzerInitialize(int *argc, char ***argv);
/* Run one input through the parser; always returns 0. */
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Quiet logging: log_v() prints nothing.  Warnings still reach stderr,
 * which run.sh discards (libFuzzer's -close_fd_mask=2).
 */
void	fuzz_quiet_log(void);

/*
 * The target's private directory, made on first use under $TMPDIR (or
 * /tmp) and removed at exit with every file fuzz_write_file() made.
 * Exits on failure: a target that cannot stage its input cannot run.
 */
const char	*fuzz_tmpdir(void);

/*
 * Write len bytes to name (relative, may hold one "dir/" component that
 * is created) inside fuzz_tmpdir(), replacing what was there.  Returns the
 * file's path, valid until the next call with the same name; exits on
 * failure.
 */
const char	*fuzz_write_file(const char *name, const void *data, size_t len);

#endif
