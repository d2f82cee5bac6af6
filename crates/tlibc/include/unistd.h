/* unistd.h (tlibc): write to descriptors 1 and 2 (the console), sleeping, the task id. */
#ifndef _TLIBC_UNISTD_H
#define _TLIBC_UNISTD_H
#include <sys/types.h>
#define STDIN_FILENO 0
#define STDOUT_FILENO 1
#define STDERR_FILENO 2
ssize_t write(int fd, const void *p, size_t n);
unsigned int sleep(unsigned int seconds);
int usleep(useconds_t us);
pid_t getpid(void);
#endif
