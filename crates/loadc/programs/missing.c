/* missing.c: calls functions tlibc does not have. loadc must refuse it, naming every one,
 * and load nothing. */
#include <stdio.h>

int fseeko_nosuch(FILE *f, long off, int whence);
int qsort_r_nosuch(void);
double lgamma_nosuch(double x);

int main(void) {
    printf("missing.c: not reached\n");
    fseeko_nosuch(stdout, 0, 0);
    qsort_r_nosuch();
    return (int)lgamma_nosuch(1.0);
}
