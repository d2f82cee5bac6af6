/* tlibc.h: everything Delos's tlibc provides to C objects run with `loadc`, in one include.
 * The standard headers beside it (stdio.h, stdlib.h, ...) declare the same things one by one;
 * stddef.h, stdarg.h, stdint.h, stdbool.h and float.h come from gcc's freestanding headers.
 * make cobj compiles with -nostdinc, so the host's libc headers never leak in:
 *   gcc -ffreestanding -nostdinc -I crates/tlibc/include -isystem $(gcc -print-file-name=include)
 *       -fno-pic -mcmodel=large -mno-red-zone -fno-stack-protector -fno-builtin -O2 -c prog.c */
#ifndef TLIBC_H
#define TLIBC_H
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <limits.h>
#include <sys/types.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <stdio.h>
#include <ctype.h>
#include <inttypes.h>
#include <setjmp.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <assert.h>
#endif
