/* fuzz_dataset.c: libFuzzer harness for the clip-list readers of wav2mel (lib/dataset.c).  The last
 * input byte picks the reader (% 3: the --list reader, the ESC-50 metadata CSV, the UrbanSound8K one)
 * and the bytes before it are the file.  The readers must either fill a list that holds together or
 * fail with a one-line message; they never open the audio files, so no audio is needed.  Seeds: when
 * tests/fuzz/run.sh sets FUZZ_SEED_DIR, LLVMFuzzerInitialize writes one valid file per reader there. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "fuzz_seed.h"

/* The file is a memfd; the dataset directory, made once, holds meta/esc50.csv and
 * metadata/UrbanSound8K.csv as links to it, so that each input is written once and never to disk.
 * The directory is removed at exit; a crash (abort, no atexit) leaves it behind in /tmp. */
static char dir[64], mem_path[64], esc50_csv[128], us8k_csv[128];

static void remove_dir(void)
{
    char p[160];
    unlink(esc50_csv);
    unlink(us8k_csv);
    snprintf(p, sizeof p, "%s/meta", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/metadata", dir);
    rmdir(p);
    rmdir(dir);
}

static int setup(void)
{
    int fd = memfd_create("dataset-fuzz", 0);
    if (fd < 0) abort();
    snprintf(mem_path, sizeof mem_path, "/proc/self/fd/%d", fd);
    snprintf(dir, sizeof dir, "/tmp/fuzz_dataset.XXXXXX");
    if (!mkdtemp(dir)) abort();
    atexit(remove_dir);
    char p[128];
    snprintf(p, sizeof p, "%s/meta", dir);
    if (mkdir(p, 0700) != 0) abort();
    snprintf(p, sizeof p, "%s/metadata", dir);
    if (mkdir(p, 0700) != 0) abort();
    snprintf(esc50_csv, sizeof esc50_csv, "%s/meta/esc50.csv", dir);
    snprintf(us8k_csv, sizeof us8k_csv, "%s/metadata/UrbanSound8K.csv", dir);
    if (symlink(mem_path, esc50_csv) != 0 || symlink(mem_path, us8k_csv) != 0) abort();
    return fd;
}

/* Seed text plus the byte that picks its reader. */
static void seed(const char *sd, const char *name, const char *text, char mode)
{
    size_t n = strlen(text);
    char *b = malloc(n + 1);
    if (!b) return;
    memcpy(b, text, n);
    b[n] = mode;
    seed_file(sd, name, b, n + 1);
    free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *sd = getenv("FUZZ_SEED_DIR");
    if (!sd || !*sd) return 0;
    /* '0' % 3 = 0: a list with every optional field given, left out and empty, a comment and CRLF */
    seed(sd, "seed-list", "clip.wav\t3\t2\tclip\n# a comment\n\nsub/dir/other.flac\nx.wav\t-1\t0\r\n"
                          "y.ogg\t\t7\tname with spaces\nz.au\t 12\n", '0');
    /* '1': the ESC-50 columns in the release's order, a quoted field holding a comma and a "" */
    seed(sd, "seed-esc50",
         "filename,fold,target,category,esc10,src_file,take\n"
         "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
         "1-100038-A-2.wav,1,2,chirping_birds,False,100038,A\n"
         "2-109505-A-1.wav,2,1,rooster,True,109505,A\n"
         "\"5-200-B-0.wav\",5,0,\"dog\",True,\"a,b \"\"c\"\"\",B\n", '1');
    /* '2': UrbanSound8K, CRLF line ends, audio under audio/foldN/ */
    seed(sd, "seed-us8k",
         "slice_file_name,fsID,start,end,salience,fold,classID,class\r\n"
         "100032-3-0-0.wav,100032,0,0.317551,1,5,3,dog_bark\r\n"
         "100263-2-0-117.wav,100263,58.5,62.5,1,5,2,children_playing\r\n"
         "101415-1-0-0.wav,101415,0,4,1,10,1,car_horn\r\n"
         "102305-0-0-0.wav,102305,0,4,2,9,0,air_conditioner\r\n", '2');
    return 0;
}

/* A list a reader returned as good: clips, names that fit a record, labels inside the classes. */
static void check_list(const dataset_list *L, int mode)
{
    if (L->n < 1 || L->n > L->cap || !L->v) abort();
    if ((mode == 0) != (L->classes == NULL) || (mode != 0 && (!L->dataset || L->n_classes < 1))) abort();
    for (int i = 0; i < L->n_classes; i++)
        if (!L->classes[i]) abort();
    for (int64_t i = 0; i < L->n; i++) {
        const dataset_item *it = &L->v[i];
        if (!it->path || strlen(it->name) > TSZ_MAX_NAME || it->fold < 0) abort();
        if (mode == 0 ? it->label < -1 : it->label < 0 || it->label >= L->n_classes) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) fd = setup();
    int mode = size ? data[size - 1] % 3 : 0;
    size_t n = size ? size - 1 : 0;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, n, 0) != (ssize_t)n) abort();
    struct util_err err = {{0}};
    dataset_list L = {0};
    int rc = mode == 0 ? dataset_read_list(mem_path, &L, &err)
           : mode == 1 ? dataset_read_esc50(dir, &L, &err)
                       : dataset_read_us8k(dir, &L, &err);
    if (rc < 0) fuzz_require_one_line(&err);
    else check_list(&L, mode);
    dataset_free(&L);
    return 0;
}
