/*
 * Chat templates.
 *
 * Models ship a Jinja template in tokenizer.chat_template. Executing it
 * would mean running code from a model file, so we never do: we recognise
 * which well-known format the template implements by its marker strings and
 * render that format with our own code. Unrecognised templates fall back to
 * ChatML and are reported as such (border control refuses them outright).
 */
#include <stdio.h>
#include <stdlib.h>

#include "eng_int.h"

static const char *const names[] = {"chatml", "llama2", "llama3", "mistral", "zephyr", "phi3", "gemma"};

const char *eng_chat_tmpl_name(enum eng_chat_tmpl t)
{
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

int eng_chat_tmpl_from_name(const char *name, enum eng_chat_tmpl *out)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i])) {
            *out = (enum eng_chat_tmpl)i;
            return 0;
        }
    return CIT_ENOENT;
}

static int has(const struct gguf_str s, const char *needle)
{
    size_t n = strlen(needle);
    if (n > s.n) return 0;
    for (size_t i = 0; i + n <= s.n; i++)
        if (!memcmp(s.p + i, needle, n)) return 1;
    return 0;
}

enum eng_chat_tmpl eng_chat_detect(const struct eng_model *m, int *recognised)
{
    struct gguf_str t;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &t, NULL)) {
        if (recognised) *recognised = 0;
        return ENG_CHAT_CHATML;
    }
    return eng_chat_detect_str(t.p, (size_t)t.n, recognised);
}

enum eng_chat_tmpl eng_chat_detect_str(const char *tmpl, size_t len, int *recognised)
{
    struct gguf_str t = {tmpl, len};
    int ok = 1;
    enum eng_chat_tmpl r = ENG_CHAT_CHATML;
    if (has(t, "<start_of_turn>")) {
        r = ENG_CHAT_GEMMA;
    } else if (has(t, "<|im_start|>")) {
        r = ENG_CHAT_CHATML;
    } else if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) {
        r = ENG_CHAT_LLAMA3;
    } else if (has(t, "<|user|>") && has(t, "<|end|>")) {
        r = ENG_CHAT_PHI3;
    } else if (has(t, "<|user|>") && has(t, "<|assistant|>")) {
        r = ENG_CHAT_ZEPHYR;
    } else if (has(t, "[INST]") && has(t, "<<SYS>>")) {
        r = ENG_CHAT_LLAMA2;
    } else if (has(t, "[INST]")) {
        r = ENG_CHAT_MISTRAL;
    } else {
        ok = 0;
    }
    if (recognised) *recognised = ok;
    return r;
}

int eng_chat_render(enum eng_chat_tmpl t, const struct eng_chat_msg *msgs, int n, int add_assistant,
                    const char *bos, char **out)
{
    struct cit_buf b = {0};
    const char *sys = NULL;
    int first_user = 1, rc = 0;
    (void)bos;
#define add(buf, ...) (rc = rc ? rc : cit_buf_printf(buf, __VA_ARGS__))
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content;
        int is_sys = !strcmp(role, "system"), is_user = !strcmp(role, "user");
        switch (t) {
        case ENG_CHAT_CHATML:
            add(&b, "<|im_start|>%s\n%s<|im_end|>\n", role, c);
            break;
        case ENG_CHAT_LLAMA3:
            add(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", role, c);
            break;
        case ENG_CHAT_ZEPHYR:
            add(&b, "<|%s|>\n%s</s>\n", role, c);
            break;
        case ENG_CHAT_PHI3:
            add(&b, "<|%s|>\n%s<|end|>\n", role, c);
            break;
        case ENG_CHAT_GEMMA:
            /* no system turn: the system prompt opens the first user turn;
             * the assistant is "model" */
            if (is_sys) {
                sys = c;
            } else {
                add(&b, "<start_of_turn>%s\n", is_user ? "user" : "model");
                if (is_user && sys && first_user) add(&b, "%s\n\n", sys);
                add(&b, "%s<end_of_turn>\n", c);
                if (is_user) first_user = 0;
            }
            break;
        case ENG_CHAT_LLAMA2:
        case ENG_CHAT_MISTRAL:
            /* The system prompt rides on the first user turn. BOS comes from
             * the tokenizer for the first turn; later turns write it. */
            if (is_sys) {
                sys = c;
            } else if (is_user) {
                add(&b, "%s[INST] ", first_user ? "" : "<s>");
                if (sys && first_user) {
                    if (t == ENG_CHAT_LLAMA2)
                        add(&b, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
                    else
                        add(&b, "%s\n\n", sys);
                }
                add(&b, "%s [/INST]", c);
                first_user = 0;
            } else {
                add(&b, " %s</s>", c);
            }
            break;
        }
    }
    if (add_assistant) {
        switch (t) {
        case ENG_CHAT_CHATML:
            add(&b, "<|im_start|>assistant\n");
            break;
        case ENG_CHAT_LLAMA3:
            add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
            break;
        case ENG_CHAT_ZEPHYR:
        case ENG_CHAT_PHI3:
            add(&b, "<|assistant|>\n");
            break;
        case ENG_CHAT_GEMMA:
            add(&b, "<start_of_turn>model\n");
            break;
        default:
            break;
        }
    }
#undef add
    if (!rc && !b.p) rc = cit_buf_add(&b, "", 0); /* no messages: an empty string */
    if (rc) {
        cit_buf_free(&b);
        return rc;
    }
    *out = b.p;
    return 0;
}
