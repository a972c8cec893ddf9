/* Word timings beside the audio, linked into flite.wasm.
 *
 * With --sets timings_file=NAME, flite writes NAME as it writes the audio:
 * for every utterance, when flite_process_output has written its samples,
 * one "U" line with the utterance's sample count (as written) and sample
 * rate, then one "W" line per token that has words with segments: the
 * token's file_pos (byte offset of the token in the input, -1 if flite
 * gave none), the start of its first word's first segment, the end of its
 * last word's last segment (seconds from the utterance's start, flite's own
 * "end" features, as -psdur prints them), and the token's name:
 *
 *   gflite-timings 1
 *   U <samples> <sample_rate>
 *   W <file_pos> <start> <end> <name>
 *
 * The name is the rest of the line (flite's token names hold no white
 * space or newline). The audio is not touched: this only reads the
 * utterance after it is written (tests/test_flitewasm.py compares every
 * voice's WAV with native flite).
 *
 * Called from flite_process_output (wasm_bin/patches/07-timings-hook.patch).
 * Written for gflite; not flite code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flite.h"

void gflite_utt_written(cst_utterance *u, const cst_wave *w);

static FILE *timings;
static char *timings_name;

/* Start of the segment item: the end of the segment before it, or 0. */
static float segment_start(const cst_item *seg)
{
    const cst_item *prev = item_prev(item_as(seg, "Segment"));
    return prev ? item_feat_float(prev, "end") : 0.0f;
}

void gflite_utt_written(cst_utterance *u, const cst_wave *w)
{
    const char *name = get_param_string(u->features, "timings_file", NULL);
    const cst_item *t, *first, *last;

    if (name == NULL || w == NULL)
        return;
    if (timings == NULL || strcmp(name, timings_name) != 0) {
        if (timings)
            fclose(timings);
        free(timings_name);
        timings_name = strdup(name);
        if ((timings = fopen(name, "w")) == NULL) {
            cst_errmsg("flite: can't open timings file \"%s\"\n", name);
            return;
        }
        fprintf(timings, "gflite-timings 1\n");
    }
    fprintf(timings, "U %d %d\n", w->num_samples, w->sample_rate);
    for (t = relation_head(utt_relation(u, "Token")); t; t = item_next(t)) {
        first = path_to_item(t, "daughter1.R:SylStructure.daughter1.daughter1");
        last = path_to_item(t, "daughtern.R:SylStructure.daughtern.daughtern");
        if (first == NULL || last == NULL)
            continue;
        fprintf(timings, "W %d %.6f %.6f %s\n",
                item_feat_present(t, "file_pos") ? item_feat_int(t, "file_pos") : -1,
                segment_start(first), item_feat_float(last, "end"), item_name(t));
    }
    fflush(timings);
}
