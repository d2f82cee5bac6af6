/* errno.h (tlibc): errno is per task. */
#ifndef _TLIBC_ERRNO_H
#define _TLIBC_ERRNO_H
int *__errno_location(void);
#define errno (*__errno_location())
#define EPERM 1
#define ENOENT 2
#define EBADF 9
#define ENOMEM 12
#define EFAULT 14
#define ENODEV 19
#define EINVAL 22
#define ERANGE 34
#define ENOSYS 38
#endif
