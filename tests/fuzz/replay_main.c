/* Replays a fuzz driver's corpus as an ordinary test, so every parser's fuzz target runs in
 * `make test` without a fuzzing engine. For each file in the corpus directories given on the
 * command line it calls LLVMFuzzerTestOneInput; then it feeds deterministic mutations of each
 * file (truncations, bit flips, byte insertions) so the driver sees malformed variants too.
 * Build with -fsanitize=fuzzer instead (SB_FUZZ=ON) to fuzz for real. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void run_variants(const uint8_t *data, size_t len)
{
    LLVMFuzzerTestOneInput(data, len);
    uint8_t *buf = malloc(len + 16);
    if (!buf) abort();
    for (size_t cut = 0; cut < len; cut += len / 16 + 1)
        LLVMFuzzerTestOneInput(data, cut);
    for (int i = 0; i < 64 && len > 0; i++) {
        memcpy(buf, data, len);
        size_t n = 1 + next_rand() % 4;
        for (size_t k = 0; k < n; k++)
            buf[next_rand() % len] ^= (uint8_t)(1u << (next_rand() % 8));
        LLVMFuzzerTestOneInput(buf, len);
        size_t at = next_rand() % len;
        memmove(buf + at + 1, buf + at, len - at);
        buf[at] = (uint8_t)next_rand();
        LLVMFuzzerTestOneInput(buf, len + 1);
    }
    free(buf);
}

static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: no corpus directory %s\n", dir);
        return 0;
    }
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t *data = malloc(1u << 22);
        if (!data) abort();
        size_t len = fread(data, 1, 1u << 22, f);
        fclose(f);
        run_variants(data, len);
        free(data);
        files++;
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++)
        files += replay_dir(argv[i]);
    /* Always exercise the empty input and some pure noise. */
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    uint8_t noise[512];
    for (int i = 0; i < 200; i++) {
        size_t n = next_rand() % sizeof noise;
        for (size_t k = 0; k < n; k++)
            noise[k] = (uint8_t)next_rand();
        LLVMFuzzerTestOneInput(noise, n);
    }
    printf("replayed %d corpus files with mutations: 1 passed, 0 failed\n", files);
    return files > 0 ? 0 : 1;
}
