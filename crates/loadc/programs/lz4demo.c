/* lz4demo.c: a user's program around a third-party C library (LZ4 1.10.0, vendored unmodified
 * in third_party/lz4 with its license). Built for Delos with
 *     make cobj SRC="crates/loadc/programs/lz4demo.c crates/loadc/programs/third_party/lz4/lz4.c crates/loadc/programs/third_party/lz4/lz4hc.c"
 * and for the host with plain gcc; the QEMU test `loadc_third_party_c_library_matches_host`
 * pushes the Delos object to a running kernel, runs it with `loadc`, and compares every line
 * with the host build's output.
 *
 * Usage: lz4demo [SIZE] [WORDS]   (SIZE bytes of text made of WORDS distinct words) */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "third_party/lz4/lz4.h"
#include "third_party/lz4/lz4hc.h"

/* A fixed generator, so both builds see the same input (not rand(): libcs differ). */
static uint64_t state = 0x2545F4914F6CDD1DULL;
static uint32_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int size = argc > 1 ? atoi(argv[1]) : 65536;
    int words = argc > 2 ? atoi(argv[2]) : 50;
    assert(size > 0 && words > 0);
    printf("lz4demo: LZ4 %s (version number %d), %d bytes of text from %d words\n", LZ4_versionString(), LZ4_versionNumber(), size, words);

    char *text = malloc((size_t)size + 1);
    if (!text) {
        perror("malloc");
        return 1;
    }
    static const char *syll[] = {"ka", "lo", "ri", "mu", "te", "sa", "no", "vi", "de", "po"};
    int filled = 0;
    while (filled < size) {
        uint32_t w = next() % (uint32_t)words;
        char word[16];
        int len = snprintf(word, sizeof word, "%s%s%s ", syll[w % 10], syll[(w / 10) % 10], w >= 100 ? syll[(w / 100) % 10] : "");
        for (int i = 0; i < len && filled < size; i++) {
            text[filled++] = word[i];
        }
    }
    text[size] = 0;

    int bound = LZ4_compressBound(size);
    char *fast = malloc((size_t)bound), *hc = malloc((size_t)bound), *back = malloc((size_t)size);
    assert(fast && hc && back);
    int nfast = LZ4_compress_default(text, fast, size, bound);
    int nhc = LZ4_compress_HC(text, hc, size, bound, LZ4HC_CLEVEL_MAX);
    printf("compressed: fast %d bytes (fnv %08" PRIx32 "), hc %d bytes (fnv %08" PRIx32 ")\n", nfast, fnv1a((unsigned char *)fast, (size_t)nfast), nhc,
           fnv1a((unsigned char *)hc, (size_t)nhc));

    double ratios[2] = {(double)size / nfast, (double)size / nhc};
    printf("ratio: fast %.3f, hc %.3f; hc saves %.2f%% over fast\n", ratios[0], ratios[1], 100.0 * (nfast - nhc) / nfast);
    printf("ratio as %%e %e, as %%g %g, as %%a %a, as %%10.4G [%10.4G]\n", ratios[1], ratios[1], ratios[1], ratios[1]);

    int nback = LZ4_decompress_safe(hc, back, nhc, size);
    int same = nback == size && memcmp(back, text, (size_t)size) == 0;
    fprintf(stdout, "round trip: %d bytes back, %s\n", nback, same ? "identical" : "DIFFERENT");

    /* Damaged input must be refused, not crash: a truncated block and a corrupted offset. */
    int trunc = LZ4_decompress_safe(hc, back, nhc / 2, size);
    hc[nhc / 3] ^= 0x5a;
    int corrupt = LZ4_decompress_safe(hc, back, nhc, size);
    printf("damaged input: truncated -> %s, corrupted -> %s\n", trunc < 0 ? "refused" : "accepted?", corrupt < 0 || corrupt != size || memcmp(back, text, (size_t)size) != 0 ? "detected" : "missed");

    /* Numbers in and out: strtod, errno, qsort over doubles. */
    const char *inputs[] = {"3.14159", "-2.5e-3", "1e400", "0x10", "  42abc", "inf", "6.02214076e23"};
    double vals[7];
    for (int i = 0; i < 7; i++) {
        char *end;
        errno = 0;
        vals[i] = strtod(inputs[i], &end);
        printf("strtod(\"%s\") = %.17g, consumed %d, errno %s\n", inputs[i], vals[i], (int)(end - inputs[i]), errno == ERANGE ? "ERANGE" : "0");
    }
    qsort(vals, 7, sizeof vals[0], by_value);
    fputs("sorted:", stdout);
    for (int i = 0; i < 7; i++) {
        printf(" %g", vals[i]);
    }
    putchar('\n');
    char line[64];
    snprintf(line, sizeof line, "%08.3f|%-8.2e|%+g|%5.1f%%", 3.14159, 1234.5, 0.0001, 99.95);
    fwrite(line, 1, strlen(line), stdout);
    printf("\nlimits: INT_MAX %d, LLONG_MIN %lld, UINT64_MAX %" PRIu64 "\n", INT_MAX, LLONG_MIN, UINT64_MAX);

    free(text);
    free(fast);
    free(hc);
    free(back);
    printf("lz4demo: %s\n", same ? "ok" : "FAILED");
    return same ? 0 : 3;
}
