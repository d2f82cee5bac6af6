/* sys/types.h (tlibc): the POSIX scalar types Delos's C programs see. */
#ifndef _TLIBC_SYS_TYPES_H
#define _TLIBC_SYS_TYPES_H
#include <stddef.h>
typedef long ssize_t;
typedef long off_t;
typedef int pid_t;
typedef long time_t;
typedef long clock_t;
typedef unsigned int useconds_t;
#endif
