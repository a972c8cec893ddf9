/* cst_wave_append_riff() that keeps the output file open, linked into flite.wasm.
 *
 * Why: flite -o FILE appends each utterance with cst_wave_append_riff(), which
 * opens the file, reads its header, seeks, writes the samples, rewrites three
 * header fields and closes it again: about a dozen file operations per
 * utterance. Natively those cost microseconds; under WASI every one is a host
 * call that wasmtime serves on a helper thread (measured here: open+close
 * ~275 us, each seek or small write ~50-90 us), so a kal16 book spent a fifth
 * of its CPU time on them. Here the first append opens the file and reads its
 * header exactly as flite does; later appends to the same file only write
 * the samples, and the header fields are written once, when another file is
 * written or the program exits. The bytes on disk at exit are the same as
 * flite's own (tests/test_flitewasm.py compares every voice with native flite).
 *
 * Linked with wasm-ld --wrap, so only calls from other objects (flite.c's
 * flite_process_output) come here; __real_cst_wave_save_riff is flite's own.
 * Written for gflite; not flite code. Assumes a little-endian target (wasm is).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cst_file.h"
#include "cst_wave.h"

int __real_cst_wave_save_riff(cst_wave *w, const char *filename);

/* The file being appended to, and the header fields flite would have written
 * after the last append. */
static struct {
    cst_file fd;
    char *name;
    int riff_bytes;   /* at offset 4: bytes in the whole RIFF chunk */
    int sample_rate;  /* at offset 24 */
    int data_bytes;   /* at offset 40: bytes of samples */
    int channels;     /* from the header, as flite's append reads it */
} open_wave;

static void finish_open_wave(void)
{
    if (open_wave.fd == NULL)
        return;
    /* The same three fields, at the same offsets, as cst_wave_append_riff. */
    cst_fseek(open_wave.fd, 4, CST_SEEK_ABSOLUTE);
    cst_fwrite(open_wave.fd, &open_wave.riff_bytes, 4, 1);
    cst_fseek(open_wave.fd, 4 + 4 + 4 + 4 + 4 + 2 + 2, CST_SEEK_ABSOLUTE);
    cst_fwrite(open_wave.fd, &open_wave.sample_rate, 4, 1);
    cst_fseek(open_wave.fd, 4 + 4 + 4 + 4 + 4 + 2 + 2 + 4 + 4 + 2 + 2 + 4, CST_SEEK_ABSOLUTE);
    cst_fwrite(open_wave.fd, &open_wave.data_bytes, 4, 1);
    cst_fclose(open_wave.fd);
    free(open_wave.name);
    memset(&open_wave, 0, sizeof open_wave);
}

/* Opens filename and reads its header as cst_wave_append_riff does; leaves
 * the file positioned after its samples. Returns the header's format code. */
static int open_for_append(const char *filename)
{
    static int registered;
    cst_wave_header hdr;
    char info[4];
    int d_int, rv;
    cst_file fd;

    if ((fd = cst_fopen(filename, CST_OPEN_WRITE | CST_OPEN_READ | CST_OPEN_BINARY)) == NULL) {
        cst_errmsg("cst_wave_append: can't open file \"%s\"\n", filename);
        return -1;
    }
    rv = cst_wave_load_riff_header(&hdr, fd);
    if (rv != CST_OK_FORMAT) {
        cst_fclose(fd);
        return rv;
    }
    cst_fread(fd, info, 1, 4);
    cst_fread(fd, &d_int, 4, 1);
    hdr.num_samples = d_int / sizeof(short);
    cst_fseek(fd, cst_ftell(fd) + (hdr.hsize - 16) + (hdr.num_samples * hdr.num_channels * sizeof(short)),
              CST_SEEK_ABSOLUTE);
    if (!registered) {
        atexit(finish_open_wave);
        registered = 1;
    }
    open_wave.fd = fd;
    open_wave.name = strdup(filename);
    open_wave.riff_bytes = hdr.num_bytes;
    open_wave.channels = hdr.num_channels;
    open_wave.data_bytes = d_int;
    return rv;
}

int __wrap_cst_wave_append_riff(cst_wave *w, const char *filename)
{
    int n, rv = CST_OK_FORMAT, samples;

    if (open_wave.fd == NULL || strcmp(open_wave.name, filename) != 0) {
        finish_open_wave();
        if ((rv = open_for_append(filename)) != CST_OK_FORMAT)
            return rv;
    }
    n = cst_fwrite(open_wave.fd, cst_wave_samples(w), sizeof(short),
                   cst_wave_num_channels(w) * cst_wave_num_samples(w));
    /* flite's own arithmetic, including its use of the header's channel count
     * for the samples already in the file. */
    samples = open_wave.data_bytes / (int)sizeof(short);
    open_wave.riff_bytes += n * (int)sizeof(short);
    open_wave.sample_rate = w->sample_rate;
    open_wave.data_bytes = (int)sizeof(short) * cst_wave_num_channels(w) * cst_wave_num_samples(w)
                           + (int)sizeof(short) * open_wave.channels * samples;
    return rv;
}

int __wrap_cst_wave_save_riff(cst_wave *w, const char *filename)
{
    /* Saving truncates the file: whatever was pending for it (or for another
     * file) is written first, as flite's own appends would already have. */
    finish_open_wave();
    return __real_cst_wave_save_riff(w, filename);
}
