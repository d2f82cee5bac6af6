/* time.h (tlibc): Delos has no wall clock; every clock counts from boot. */
#ifndef _TLIBC_TIME_H
#define _TLIBC_TIME_H
#include <sys/types.h>
#define CLOCKS_PER_SEC 1000000L
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
struct timespec {
    time_t tv_sec;
    long tv_nsec;
};
typedef int clockid_t;
time_t time(time_t *t);
clock_t clock(void);
int clock_gettime(clockid_t clock, struct timespec *ts);
#endif
