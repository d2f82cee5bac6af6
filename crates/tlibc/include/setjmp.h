/* setjmp.h (tlibc). */
#ifndef _TLIBC_SETJMP_H
#define _TLIBC_SETJMP_H
typedef unsigned long jmp_buf[8];
int setjmp(jmp_buf env) __attribute__((returns_twice));
void longjmp(jmp_buf env, int val) __attribute__((noreturn));
#endif
