/*
 * libFuzzer target for the GGUF reader (make fuzz). Any input must either
 * be refused with a message or parse into a file whose every value and
 * tensor can be read without leaving the buffer; ASan/UBSan catch the rest.
 * When the bytes parse, the model loader's vocabulary and shape checks run
 * on them too, through a temporary file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "citadel/engine.h"
#include "citadel/gguf.h"
#include "../src/gguf/gguf_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
volatile uint64_t fuzz_sink; /* keeps the reads below from being optimised away */

static uint64_t touch(const struct gguf_value *v, int depth)
{
    uint64_t h = v->type;
    if (depth > GGUF_MAX_ARRAY_DEPTH + 1) abort(); /* the reader promised a bound */
    if (v->type == GGUF_V_STRING) {
        for (uint64_t i = 0; i < v->s.n; i++) h += (uint8_t)v->s.p[i];
    } else if (v->type == GGUF_V_ARRAY) {
        if (v->arr.items)
            for (uint64_t i = 0; i < v->arr.n; i++) h += touch(&v->arr.items[i], depth + 1);
        else if (v->arr.n && v->arr.type != GGUF_V_BOOL) {
            float f = gguf_arr_f32(v, 0);
            uint32_t bits;
            memcpy(&bits, &f, 4);
            h += (uint64_t)gguf_arr_int(v, v->arr.n - 1) + bits;
        }
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_file *f;
    struct cit_err err;
    if (gguf_open_memory(data, size, &f, &err) != 0) {
        if (!err.msg[0]) abort(); /* a refusal always says why */
        return 0;
    }
    for (uint64_t i = 0; i < f->n_kv; i++) fuzz_sink += touch(&f->kv[i].v, 0);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        fuzz_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->size - 1];
    }
    gguf_close(f);
    {
        char path[64];
        int fd;
        struct eng_model *m;
        snprintf(path, sizeof(path), "/tmp/fuzz-gguf-%d.gguf", (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            if (write(fd, data, size) == (ssize_t)size && eng_model_load(path, &m, &err) == 0) {
                int32_t ids[64];
                int n;
                eng_tokenize(m, "Hello, world! 123", 17, 1, 1, ids, 64, &n);
                eng_model_free(m);
            }
            close(fd);
            unlink(path);
        }
    }
    return 0;
}
