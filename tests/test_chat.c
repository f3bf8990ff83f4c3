/* Chat templates (recognition, rendering) and sampling. */
#include <math.h>
#include <stdlib.h>

#include "citadel/engine.h"
#include "test.h"

void test_chat_detect(void)
{
    const struct {
        const char *tmpl;
        enum eng_chat_tmpl want;
        int recognised;
    } cases[] = {
        {"{% for m in messages %}<|im_start|>{{m.role}}\n{{m.content}}<|im_end|>{% endfor %}",
         ENG_CHAT_CHATML, 1},
        {"{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + "
         "'<|eot_id|>' }}",
         ENG_CHAT_LLAMA3, 1},
        {"{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content + ' [/INST]' "
         "}}",
         ENG_CHAT_LLAMA2, 1},
        {"{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
         ENG_CHAT_MISTRAL, 1},
        {"{% for m in messages %}<|user|>\n{{ m.content }}</s>\n<|assistant|>\n{% endfor %}",
         ENG_CHAT_ZEPHYR, 1},
        {"{% for m in messages %}<|user|>\n{{ m.content }}<|end|>\n<|assistant|>\n{% endfor %}",
         ENG_CHAT_PHI3, 1},
        {"{{ bos_token }}{% for m in messages %}<start_of_turn>{{ role }}\n{{ m['content'] | trim "
         "}}"
         "<end_of_turn>\n{% endfor %}",
         ENG_CHAT_GEMMA, 1},
        {"{{ raise_exception('anything else') }}", ENG_CHAT_CHATML, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rec = -1;
        enum eng_chat_tmpl t = eng_chat_detect_str(cases[i].tmpl, strlen(cases[i].tmpl), &rec);
        CHECKF(t == cases[i].want && rec == cases[i].recognised, "case %zu: %s (%d)", i,
               eng_chat_tmpl_name(t), rec);
    }
    {
        enum eng_chat_tmpl t;
        CHECK(eng_chat_tmpl_from_name("phi3", &t) == 0 && t == ENG_CHAT_PHI3);
        CHECK(eng_chat_tmpl_from_name("jinja", &t) == CIT_ENOENT);
    }
}

void test_chat_render(void)
{
    const struct eng_chat_msg msgs[] = {
        {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
    const struct {
        enum eng_chat_tmpl t;
        const char *want;
    } cases[] = {
        {ENG_CHAT_CHATML,
         "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
         "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
         "<|im_start|>assistant\n"},
        {ENG_CHAT_LLAMA3, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {ENG_CHAT_LLAMA2,
         "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello.</s><s>[INST] Bye [/INST]"},
        {ENG_CHAT_MISTRAL, "[INST] Be brief.\n\nHi [/INST] Hello.</s><s>[INST] Bye [/INST]"},
        {ENG_CHAT_ZEPHYR, "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n"
                          "<|user|>\nBye</s>\n<|assistant|>\n"},
        {ENG_CHAT_PHI3,
         "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
         "<|user|>\nBye<|end|>\n<|assistant|>\n"},
        {ENG_CHAT_GEMMA, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                         "<start_of_turn>model\nHello.<end_of_turn>\n"
                         "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out;
        CHECK(eng_chat_render(cases[i].t, msgs, 4, 1, NULL, &out) == 0);
        CHECKF(!strcmp(out, cases[i].want), "%s:\n%s", eng_chat_tmpl_name(cases[i].t), out);
        cit_free(out);
    }
}

static struct eng_sampler *mk(float temp, int k, float p, float minp, uint64_t seed, int n)
{
    struct eng_sampler_params sp;
    struct eng_sampler *s = NULL;
    eng_sampler_defaults(&sp);
    sp.temperature = temp, sp.top_k = k, sp.top_p = p, sp.min_p = minp, sp.seed = seed;
    if (eng_sampler_new(&sp, n, &s)) return NULL;
    return s;
}

void test_sample_greedy(void)
{
    float l[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
    struct eng_sampler *s = mk(0, 0, 1, 0, 1, 5);
    CHECK(s && eng_sample(s, l, NULL, 0) == 1);
    eng_sampler_free(s);
    /* Repetition penalty moves greedy off a repeated token. */
    {
        struct eng_sampler_params sp;
        int32_t hist[1] = {1};
        float l2[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
        eng_sampler_defaults(&sp);
        sp.temperature = 0, sp.repeat_penalty = 1.5f;
        CHECK(eng_sampler_new(&sp, 5, &s) == 0);
        CHECK(eng_sample(s, l2, hist, 1) == 3);
        eng_sampler_free(s);
    }
    {
        struct eng_sampler_params sp;
        eng_sampler_defaults(&sp);
        sp.top_p = 0;
        CHECK(eng_sampler_new(&sp, 5, &s) == CIT_EINVAL);
    }
}

void test_sample_seeded(void)
{
    enum { V = 1000 };
    static float base[V];
    int32_t a[50], b[50], c[50];
    uint64_t st = 3;
    for (int i = 0; i < V; i++) base[i] = t_randf(&st) * 3;
    for (int run = 0; run < 3; run++) {
        struct eng_sampler *s = mk(1.0f, 0, 1.0f, 0, run == 2 ? 99 : 42, V);
        int32_t *dst = run == 0 ? a : run == 1 ? b : c;
        CHECK(s);
        for (int i = 0; i < 50; i++) {
            float l[V];
            memcpy(l, base, sizeof(l));
            dst[i] = eng_sample(s, l, NULL, 0);
        }
        eng_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof(a)) == 0); /* same seed, same draws */
    CHECK(memcmp(a, c, sizeof(a)) != 0); /* another seed, other draws */
}

void test_sample_distribution(void)
{
    /* Two tokens with probabilities 1/4 and 3/4 at temperature 1. The seed is
     * fixed, so the count is deterministic; the bound is 5 sigma wide. */
    struct eng_sampler *s = mk(1.0f, 0, 1.0f, 0, 7, 2);
    int ones = 0, n = 20000;
    CHECK(s);
    for (int i = 0; i < n; i++) {
        float l[2] = {0, logf(3)};
        ones += eng_sample(s, l, NULL, 0) == 1;
    }
    eng_sampler_free(s);
    CHECKF(fabs(ones / (double)n - 0.75) < 5 * sqrt(0.75 * 0.25 / n), "share %g", ones / (double)n);
}

void test_sample_filters(void)
{
    float base[6] = {5, 4, 3, 2, 1, 0};
    /* top-k 2: only ids 0 and 1 ever come out. */
    struct eng_sampler *s = mk(5.0f, 2, 1.0f, 0, 1, 6);
    for (int i = 0; i < 500; i++) {
        float l[6];
        int32_t t;
        memcpy(l, base, sizeof(l));
        t = eng_sample(s, l, NULL, 0);
        CHECK(t == 0 || t == 1);
    }
    eng_sampler_free(s);
    /* top-p: p(0) = 0.64 at T=1, so top-p 0.5 keeps only id 0. */
    s = mk(5.0f, 0, 0.5f, 0, 1, 6);
    for (int i = 0; i < 200; i++) {
        float l[6];
        memcpy(l, base, sizeof(l));
        CHECK(eng_sample(s, l, NULL, 0) == 0);
    }
    eng_sampler_free(s);
    /* min-p 0.3: id 1 has p1/p0 = e^-1 = 0.37 (kept), id 2 0.14 (cut). */
    s = mk(5.0f, 0, 1.0f, 0.3f, 1, 6);
    {
        int seen1 = 0;
        for (int i = 0; i < 500; i++) {
            float l[6];
            int32_t t;
            memcpy(l, base, sizeof(l));
            t = eng_sample(s, l, NULL, 0);
            CHECK(t == 0 || t == 1);
            seen1 |= t == 1;
        }
        CHECK(seen1);
    }
    eng_sampler_free(s);
}

/* logit_bias and OpenAI's frequency and presence penalties, greedy so
 * that each step's choice follows from the arithmetic. */
void test_sample_penalties(void)
{
    struct eng_sampler_params p;
    struct eng_sampler *s;
    struct eng_logit_bias bias[2] = {{0, -100}, {3, 2.5f}};
    int32_t seq[6];
    eng_sampler_defaults(&p);
    p.temperature = 0;
    /* bias: id 0 (5.0) banned, id 3 (2 + 2.5 = 4.5) above id 1 (4.0) */
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    CHECK(eng_sampler_new(&p, 6, &s) == 0);
    bias[1].bias = -50; /* copied at creation: this changes nothing */
    {
        float l[6] = {5, 4, 3, 2, 1, 0};
        CHECK(eng_sample(s, l, NULL, 0) == 3);
    }
    eng_sampler_free(s);
    bias[0].token = 6; /* outside the vocabulary */
    CHECK(eng_sampler_new(&p, 6, &s) == CIT_ERANGE);
    bias[0] = (struct eng_logit_bias){0, 101};
    CHECK(eng_sampler_new(&p, 6, &s) == CIT_EINVAL);
    /* frequency 0.6: id 0 (5.0) is drawn until 5 - 0.6 k < 4.0 (after
     * two draws), then id 1 and id 0 alternate by the same arithmetic */
    eng_sampler_defaults(&p);
    p.temperature = 0;
    p.frequency_penalty = 0.6f;
    CHECK(eng_sampler_new(&p, 6, &s) == 0);
    for (int i = 0; i < 6; i++) {
        float l[6] = {5, 4, 3, 2, 1, 0};
        seq[i] = eng_sample(s, l, NULL, 0);
    }
    eng_sampler_free(s);
    /* 5, 4.4, 3.8 < 4 -> 1; then 3.8 vs 3.4 -> 0 (3.2); 3.2 vs 3.4 -> 1 ... */
    CHECKF(seq[0] == 0 && seq[1] == 0 && seq[2] == 1 && seq[3] == 0 && seq[4] == 1 && seq[5] == 0,
           "%d %d %d %d %d %d", seq[0], seq[1], seq[2], seq[3], seq[4], seq[5]);
    /* presence 1.5: each token once, in order, while the penalty holds */
    eng_sampler_defaults(&p);
    p.temperature = 0;
    p.presence_penalty = 1.5f;
    CHECK(eng_sampler_new(&p, 6, &s) == 0);
    for (int i = 0; i < 4; i++) {
        float l[6] = {5, 4, 3, 2, 1, 0};
        seq[i] = eng_sample(s, l, NULL, 0);
    }
    eng_sampler_free(s);
    /* 0 (5); then 1 (4 > 3.5); then 0 and 1 at 3.5 and 2.5 vs 2 (3): 0 */
    CHECKF(seq[0] == 0 && seq[1] == 1 && seq[2] == 0 && seq[3] == 0, "%d %d %d %d", seq[0], seq[1],
           seq[2], seq[3]);
    p.presence_penalty = 2.5f;
    CHECK(eng_sampler_new(&p, 6, &s) == CIT_EINVAL);
}

void test_stop_strings(void)
{
    const char *stops[] = {"</answer>", "\n\nUser:", "END"};
    size_t emit;
    /* no stop, nothing that could start one */
    CHECK(eng_stop_check(stops, 3, "hello world", 11, &emit) == 0 && emit == 11);
    /* a tail that may become a stop string is held back */
    CHECK(eng_stop_check(stops, 3, "hello </ans", 11, &emit) == 0 && emit == 6);
    CHECK(eng_stop_check(stops, 3, "hello\n\nUse", 10, &emit) == 0 && emit == 5);
    CHECK(eng_stop_check(stops, 3, "hello E", 7, &emit) == 0 && emit == 6);
    /* a stop string: cut before its first occurrence, whichever comes first */
    CHECK(eng_stop_check(stops, 3, "a END b </answer>", 17, &emit) == 1 && emit == 2);
    CHECK(eng_stop_check(stops, 3, "x</answer>y END", 15, &emit) == 1 && emit == 1);
    /* no stop strings at all, and an empty text */
    CHECK(eng_stop_check(NULL, 0, "abc", 3, &emit) == 0 && emit == 3);
    CHECK(eng_stop_check(stops, 3, "", 0, &emit) == 0 && emit == 0);
}
