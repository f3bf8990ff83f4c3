/* policy: parsing with errors that name the line, decisions for every
 * action, rule order, class order, declared labels, unknown tenant and
 * model, and an injected detector failure giving deny. */
#include <stdlib.h>

#include "citadel/policy.h"
#include "test.h"
#include "../src/core/core_int.h"
#include "../src/policy/policy_int.h"

static const char base[] =
    "version: 1\n"                                    /* 1 */
    "node: {id: n1, jurisdiction: DE}\n"              /* 2 */
    "classes: [public, internal, personal, secret]\n" /* 3 */
    "detectors: {email: personal, ipv4: internal}\n"  /* 4 */
    "keywords:\n"                                     /* 5 */
    "  - {word: BLUEBIRD, class: secret}\n"           /* 6 */
    "tenants:\n"                                      /* 7 */
    "  t1: {requests_per_minute: 10}\n"               /* 8 */
    "  t2:\n"                                         /* 9 */
    "models:\n"                                       /* 10 */
    "  small: {jurisdiction: DE, classes: [public, internal]}\n"
    "  big: {jurisdiction: DE, classes: [public, internal, personal]}\n"
    "peers:\n"
    "  fr: {jurisdiction: FR, url: 'https://fr.example', classes: [public],\n"
    "       identity: 'fr+91d01aa2+Ab4iwXJ5wU29S3D7BhKj/0CagVXkYPflyuh1fP0DQlV0'}\n"
    "  fr2: {jurisdiction: FR, url: 'https://fr2.example', classes: [public, internal],\n"
    "        identity: 'fr+91d01aa2+Ab4iwXJ5wU29S3D7BhKj/0CagVXkYPflyuh1fP0DQlV0'}\n"
    "  global: {kind: openai, jurisdiction: US, url: 'http://127.0.0.1:9/v1', classes: [public],\n"
    "           api_key_file: key.txt, model: gpt-x, timeout_s: 30}\n";

static struct pol_policy *load(const char *rules, struct cit_err *err)
{
    static char text[8192];
    struct pol_policy *p = NULL;
    snprintf(text, sizeof(text), "%s%s", base, rules);
    if (pol_parse("test.yaml", text, strlen(text), &p, err)) return NULL;
    return p;
}

static int decide(const struct pol_policy *p, const char *tenant, const char *model,
                  const char *text, const char *declared, const char **rule, char *reason)
{
    struct pol_request r = {tenant, model, text, strlen(text), declared, NULL, 0};
    struct pol_decision d;
    pol_decide(p, &r, &d);
    int a = d.action;
    if (rule) *rule = d.rule_id;
    if (reason) snprintf(reason, 256, "%s", d.reason);
    pol_decision_free(&d);
    return a;
}

void test_policy_errors(void)
{
    struct cit_err err = {{0}};
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"version: 1\nnode: {id: n1, jurisdiction: DE}\nclases: [a]\n",
         "test.yaml:3: unknown key 'clases' in the policy; expected one of: version, node, "
         "classes"},
        {"version: 2\n", "test.yaml:1: version must be a whole number from 1 to 1, not '2'"},
        {"version: 1\nnode: [x\n", "test.yaml:3: not valid YAML"},
        {"", "the policy is empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pol_policy *p = NULL;
        CHECKF(pol_parse("test.yaml", cases[i].text, strlen(cases[i].text), &p, &err) ==
                   CIT_EFORMAT,
               "case %zu parsed", i);
        CHECKF(strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
    }
    static const struct {
        const char *rules, *want;
    } bad[] = {
        {"rules:\n  - {id: r1, action: allow}\n",
         "test.yaml:21: rule 'r1': action 'allow' is not local, redact, forward or deny"},
        {"rules:\n  - {id: r1, action: forward}\n", "rule 'r1' forwards: name the 'peer'"},
        {"rules:\n  - {id: r1, action: forward, peer: de}\n", "peer 'de' is not under 'peers'"},
        {"rules:\n  - {id: r1, action: local, when: {tenant: t9}}\n",
         "test.yaml:21: when.tenant: 't9' is not defined"},
        {"rules:\n  - {id: r1, action: local, when: {class_at_least: top}}\n",
         "'top' is not one of the classes"},
        {"rules:\n  - {id: r1, action: local}\n  - {id: r2, action: deny}\n",
         "test.yaml:22: rule 'r2' can never apply: rule 'r1' (line 21)"},
        {"rules:\n  - {id: r1, action: local}\n  - {id: r1, action: deny}\n",
         "rule id 'r1' is used twice"},
        {"rules:\n  - {id: r1, action: local, when: {tenants: t1}}\n",
         "unknown key 'tenants' in a rule's 'when'"},
        {"rules: []\n", "'rules' must be a list of rules"},
        {"rules:\n  - {id: r1, action: forward, peer: [fr, fr]}\n", "peer 'fr' is named twice"},
        {"rules:\n  - {id: r1, action: forward, peer: []}\n", "a list of up to 8 peers"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECKF(!load(bad[i].rules, &err), "bad %zu parsed", i);
        CHECKF(strstr(err.msg, bad[i].want), "bad %zu: %s", i, err.msg);
    }
    /* every allocation failure while loading unwinds with an error */
    for (long nth = 1; nth < 200; nth++) {
        cit_alloc_fail_at(nth);
        struct pol_policy *p = load("rules:\n  - {id: r1, action: local}\n", &err);
        cit_alloc_fail_at(0);
        pol_free(p);
    }
}

/* The peers' links: each kind's fields, and what a wrong one is told. */
void test_policy_peers(void)
{
    static const char head[] = "version: 1\nnode: {id: n1, jurisdiction: DE}\n"
                               "classes: [public, internal]\ntenants: {t1: {}}\n"
                               "models: {m: {jurisdiction: DE, classes: [public]}}\n"
                               "rules:\n  - {id: r1, action: local}\npeers:\n";
    static const struct {
        const char *peers, *want;
    } bad[] = {
        {"  p: {jurisdiction: FR, classes: [public], url: 'https://p.example'}\n",
         "test.yaml:9: peer 'p' (kind citadel) needs its 'identity'"},
        {"  p: {jurisdiction: FR, classes: [public], url: 'http://p.example', identity: x}\n",
         "peer 'p' needs a 'url' starting with https://"},
        {"  p: {kind: openai, jurisdiction: US, classes: [public], url: 'http://10.1.1.1/v1'}\n",
         "plain http:// only for an openai peer on this machine's loopback"},
        {"  p: {kind: grpc, jurisdiction: US, classes: [public], url: 'https://x'}\n",
         "peer 'p': kind is citadel or openai"},
        {"  p: {kind: openai, jurisdiction: US, classes: [public], url: 'https://x', identity: "
         "k}\n",
         "'identity' goes with kind citadel"},
        {"  p: {jurisdiction: FR, classes: [public], url: 'https://x', identity: k, "
         "api_key_file: f}\n",
         "'api_key_file' goes with kind openai"},
        {"  p: {kind: openai, jurisdiction: US, classes: [public], url: 'https://x', timeout_s: "
         "0}\n",
         "timeout_s must be a whole number from 1 to 86400"},
        {"  p: {kind: openai, jurisdiction: US, classes: [public], url: 'https://x', port: 1}\n",
         "unknown key 'port' in a peer"},
    };
    struct cit_err err = {{0}};
    char text[2048];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pol_policy *p = NULL;
        snprintf(text, sizeof(text), "%s%s", head, bad[i].peers);
        CHECKF(pol_parse("test.yaml", text, strlen(text), &p, &err) == CIT_EFORMAT, "bad %zu parsed",
               i);
        CHECKF(strstr(err.msg, bad[i].want), "bad %zu: %s", i, err.msg);
    }
    /* what a good one keeps: defaults, and paths from the policy's folder */
    struct pol_policy *p = NULL;
    snprintf(text, sizeof(text), "%s%s", head,
             "  g: {kind: openai, jurisdiction: US, classes: [public], url: 'https://g.example/v1/',"
             " api_key_file: keys/g.txt, ca: /etc/ca.pem}\n"
             "  c: {jurisdiction: FR, classes: [public], url: 'https://c.example:8443', identity: "
             "'c/audit+01020304+AQ'}\n");
    CHECKF(!pol_parse("/etc/citadel/policy.yaml", text, strlen(text), &p, &err), "%s", err.msg);
    if (!p) return;
    CHECK(p->n_peers == 2 && pol_peer_index(p, "c") == 1 && pol_peer_index(p, "x") < 0);
    CHECK(p->peers[0].kind == POL_PEER_OPENAI && !strcmp(p->peers[0].url, "https://g.example/v1"));
    CHECK(!strcmp(p->peers[0].api_key_file, "/etc/citadel/keys/g.txt"));
    CHECK(!strcmp(p->peers[0].ca, "/etc/ca.pem"));
    CHECK(p->peers[0].timeout_s == 120 && p->peers[0].connect_timeout_s == 5);
    CHECK(p->peers[1].kind == POL_PEER_CITADEL && !strcmp(p->peers[1].identity, "c/audit+01020304+AQ"));
    pol_free(p);
}

void test_policy_decisions(void)
{
    struct cit_err err = {{0}};
    struct pol_policy *p =
        load("rules:\n"
             "  - {id: no-secrets, action: deny, when: {classes_any: secret}, reason: no}\n"
             "  - {id: t2-personal, action: local, when: {tenant: t2, class_at_least: personal}}\n"
             "  - {id: personal, action: redact, when: {class_at_least: personal}}\n"
             "  - {id: public-out, action: forward, peer: fr, when: {class_at_most: public, model: "
             "small}}\n"
             "  - {id: internal, action: local, when: {class_at_most: internal}}\n",
             &err);
    CHECKF(p, "%s", err.msg);
    CHECK(strlen(p->hash_hex) == 64);
    const char *rule;
    char why[256];
    /* every action, and rule order: the first match decides */
    CHECK(decide(p, "t1", "small", "hello", NULL, &rule, why) == POL_FORWARD &&
          !strcmp(rule, "public-out"));
    CHECK(decide(p, "t1", "big", "hello", NULL, &rule, why) == POL_LOCAL &&
          !strcmp(rule, "internal"));
    CHECK(decide(p, "t1", "big", "mail a@example.com", NULL, &rule, why) == POL_REDACT &&
          !strcmp(rule, "personal"));
    CHECK(decide(p, "t1", "big", "BLUEBIRD and a@example.com", NULL, &rule, why) == POL_DENY &&
          !strcmp(rule, "no-secrets") && !strcmp(why, "no"));
    /* class order: internal is above public, so the forward rule no longer matches */
    CHECK(decide(p, "t1", "small", "host 10.0.0.1", NULL, &rule, why) == POL_LOCAL &&
          !strcmp(rule, "internal"));
    /* a forward to several peers keeps those cleared, in order */
    {
        struct pol_policy *q =
            load("rules:\n  - {id: out, action: forward, peer: [fr, fr2, global]}\n", &err);
        CHECKF(q, "%s", err.msg);
        if (q) {
            struct pol_request r = {"t1", "small", "hello", 5, NULL, NULL, 0};
            struct pol_decision d;
            pol_decide(q, &r, &d);
            CHECK(d.action == POL_FORWARD && d.n_fwd == 3 && !strcmp(d.peer, "fr"));
            CHECK(!strcmp(q->peers[d.fwd[1]].id, "fr2") && !strcmp(q->peers[d.fwd[2]].id, "global"));
            pol_decision_free(&d);
            r.text = "host 10.0.0.1"; /* internal: only fr2 is cleared */
            r.len = strlen(r.text);
            pol_decide(q, &r, &d);
            CHECK(d.action == POL_FORWARD && d.n_fwd == 1 && !strcmp(d.peer, "fr2"));
            pol_decision_free(&d);
            r.text = "mail a@example.com"; /* personal: none is */
            r.len = strlen(r.text);
            pol_decide(q, &r, &d);
            CHECK(d.action == POL_DENY && d.n_fwd == 0 && strstr(d.reason, "none of them"));
            pol_decision_free(&d);
            pol_free(q);
        }
    }
    /* a tenant-specific rule before the general one */
    CHECK(decide(p, "t2", "big", "mail a@example.com", NULL, &rule, why) == POL_LOCAL &&
          !strcmp(rule, "t2-personal"));
    /* the rule says local, but the model is not cleared for the class: deny */
    CHECK(decide(p, "t2", "small", "mail a@example.com", NULL, &rule, why) == POL_DENY);
    CHECKF(strstr(why, "model 'small' is not cleared for class 'personal'"), "%s", why);
    /* declared labels raise and never lower */
    CHECK(decide(p, "t1", "big", "hello", "personal", &rule, why) == POL_REDACT);
    CHECK(decide(p, "t1", "big", "hello", "secret", &rule, why) == POL_DENY &&
          !strcmp(rule, "no-secrets"));
    CHECK(decide(p, "t1", "big", "a@example.com", "public", &rule, why) == POL_REDACT);
    /* redaction cannot remove a declared class the model may not see */
    CHECK(decide(p, "t1", "small", "a@example.com", "personal", &rule, why) == POL_DENY);
    CHECKF(strstr(why, "declares class 'personal'"), "%s", why);
    CHECK(decide(p, "t1", "big", "hello", "nope", &rule, why) == POL_DENY && strstr(why, "'nope'"));
    /* unknown tenant, unknown model */
    CHECK(decide(p, "t9", "big", "hello", NULL, &rule, why) == POL_DENY && !rule[0] &&
          strstr(why, "tenant 't9'"));
    CHECK(decide(p, "t1", "gpt", "hello", NULL, &rule, why) == POL_DENY &&
          strstr(why, "model 'gpt'"));
    /* a detector failure (allocation failure injected into the scan) denies */
    struct pol_request r = {"t1", "small", "mail a@example.com, b@example.org", 34, NULL, NULL, 0};
    struct pol_decision d;
    cit_alloc_fail_at(1);
    int rc = pol_decide(p, &r, &d);
    cit_alloc_fail_at(0);
    CHECK(rc == CIT_ENOMEM && d.action == POL_DENY && strstr(d.reason, "detection failed"));
    pol_decision_free(&d);
    pol_free(p);
    /* no rule matches: deny */
    p = load("rules:\n  - {id: only-public, action: local, when: {class_at_most: public}}\n", &err);
    CHECKF(p, "%s", err.msg);
    CHECK(decide(p, "t1", "big", "host 10.0.0.1", NULL, &rule, why) == POL_DENY &&
          strstr(why, "no rule matches"));
    pol_free(p);
    /* an unlisted detector counts as the most sensitive class (fail closed) */
    p = load("rules:\n  - {id: up-to-personal, action: local, when: {class_at_most: personal}}\n",
             &err);
    CHECKF(p, "%s", err.msg);
    CHECK(decide(p, "t1", "big", "card 4111 1111 1111 1111", NULL, &rule, why) == POL_DENY);
    CHECK(decide(p, "t1", "big", "mail a@example.com", NULL, &rule, why) == POL_LOCAL);
    pol_free(p);
}

void test_policy_cases(void)
{
    struct cit_err err = {{0}};
    struct pol_policy *p;
    CHECKF(pol_load("policy.example.yaml", &p, &err) == 0, "%s", err.msg);
    size_t len;
    char *cases = t_read_file("tests/data/policy_cases.yaml", &len);
    CHECK(cases);
    struct cit_buf report = {0};
    int pass, fail;
    CHECKF(pol_run_cases(p, "policy_cases.yaml", cases, len, &report, &pass, &fail, &err) == 0,
           "%s", err.msg);
    CHECKF(fail == 0 && pass >= 15, "%d passed, %d failed:\n%s", pass, fail, report.p);
    t_note("policy.example.yaml: %d cases passed", pass);
    cit_buf_free(&report);
    cit_free(cases);
    pol_free(p);
}

/* Runs text through the output filter in pieces of 1..max_piece bytes
 * (each piece a step on the text so far, then a final step), into out. */
static int stream_output(const struct pol_policy *p, const char *text, size_t max_piece,
                         unsigned seed, struct cit_buf *out, struct pol_outscan *o)
{
    size_t len = strlen(text), at = 0;
    memset(o, 0, sizeof(*o));
    while (at < len) {
        seed = seed * 1103515245u + 12345u;
        at += 1 + (seed >> 16) % max_piece;
        if (at > len) at = len;
        if (pol_output_step(p, o, text, at, at, 0, out)) return -1;
        /* nothing released is ever taken back: the released part is settled */
        if (o->done > at) return -1;
    }
    return pol_output_step(p, o, text, len, len, 1, out);
}

void test_policy_output(void)
{
    struct cit_err err = {{0}};
    static const struct {
        const char *output, *want;
    } bad[] = {
        {"output: {action: mask}\n",
         "test.yaml:16: output.action 'mask' is not off, redact or deny"},
        {"output: {action: redact, hold_back: 40}\n",
         "output.hold_back must be a whole number from 48"},
        {"output: {action: redact, class_at_least: top}\n", "'top' is not one of the classes"},
        {"output: {action: redact, window: 3}\n", "unknown key 'window' in output"},
        {"output: {class_at_least: secret}\n", "output needs an 'action'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char rules[512];
        snprintf(rules, sizeof(rules), "rules:\n  - {id: r1, action: local}\n%s", bad[i].output);
        /* the output line is line 18; the first message names it */
        CHECKF(!load(rules, &err), "case %zu parsed", i);
        CHECKF(strstr(err.msg, bad[i].want) || (i == 0 && strstr(err.msg, "output.action 'mask'")),
               "case %zu: %s", i, err.msg);
    }

    /* redact: every finding of class personal or above, ipv4 (internal) passes */
    struct pol_policy *p =
        load("rules:\n  - {id: r1, action: local}\n"
             "output: {action: redact, class_at_least: personal, hold_back: 48}\n",
             &err);
    CHECKF(p, "%s", err.msg);
    CHECK(p->out_action == POL_REDACT && p->out_hold == 48);
    static const char text[] =
        "Write to anna.katharina.schmidt-mueller@research.example.de or call +49 30 12345678 about "
        "BLUEBIRD.\n"
        "The host 10.1.2.3 keeps the key:\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v5u3J9kq2\nQx8f0Zr9sL0mHk=\n"
        "-----END RSA PRIVATE KEY-----\n"
        "and the token aK9fQ2xZ7mP4rT8wL1bN6vC3hY5jD0sEu7Gq2Vn5Rb8Kc1Wx4Tz9Lp3Hm6Fy0Js is old; "
        "bluebirds stay.";
    static const char want[] =
        "Write to [REDACTED_EMAIL] or call [REDACTED_PHONE] about [REDACTED_KEYWORD].\n"
        "The host 10.1.2.3 keeps the key:\n"
        "[REDACTED_PRIVATE_KEY]\n"
        "and the token [REDACTED_SECRET_TOKEN] is old; bluebirds stay.";
    struct cit_buf one = {0}, many = {0};
    struct pol_outscan o;
    CHECK(pol_output_step(p, &(struct pol_outscan){0}, text, strlen(text), strlen(text), 1, &one) ==
          0);
    CHECKF(one.p && !strcmp(one.p, want), "whole text gave\n%s", one.p ? one.p : "(nothing)");
    /* the same bytes whatever the pieces the text arrives in */
    for (unsigned seed = 1; seed <= 40; seed++) {
        many.len = 0;
        CHECK(stream_output(p, text, seed % 9 + 1, seed, &many, &o) == 0);
        CHECK(cit_buf_add(&many, "", 1) == 0);
        CHECKF(!strcmp(many.p, want), "seed %u gave\n%s", seed, many.p);
        CHECK(o.n_found == 5 && o.classes == (1u << 2 | 1u << 3));
    }
    pol_free(p);

    /* deny: the answer ends before the first finding acted on */
    p = load("rules:\n  - {id: r1, action: local}\n"
             "output: {action: deny, class_at_least: secret}\n",
             &err);
    CHECKF(p, "%s", err.msg);
    CHECK(p->out_hold == 64);
    for (unsigned seed = 1; seed <= 20; seed++) {
        many.len = 0;
        CHECK(stream_output(p, text, seed % 5 + 1, seed, &many, &o) == 0);
        CHECK(cit_buf_add(&many, "", 1) == 0);
        CHECKF(
            !strcmp(many.p, "Write to anna.katharina.schmidt-mueller@research.example.de or call "),
            "seed %u: %s", seed, many.p);
        CHECK(o.stopped && o.n_found == 1 && o.classes == 1u << 3);
    }
    pol_free(p);

    /* off: released as it comes, nothing held */
    p = load("rules:\n  - {id: r1, action: local}\n", &err);
    CHECKF(p, "%s", err.msg);
    memset(&o, 0, sizeof(o));
    many.len = 0;
    CHECK(pol_output_step(p, &o, text, 20, 20, 0, &many) == 0 && o.done == 20 && many.len == 20);
    pol_free(p);
    cit_buf_free(&one);
    cit_buf_free(&many);
}

void test_policy_quotas(void)
{
    char path[512];
    struct pol_quotas *q;
    struct cit_db *db;
    struct pol_quota_ticket t, t2;
    struct pol_quota_state st;
    struct cit_err err;
    const struct pol_quota lim = {2, 100, 1};
    const int64_t now = 1795334400 + 30; /* 30 s into a UTC day */
    snprintf(path, sizeof(path), "%s/quota-unit.db", t_tmpdir());
    remove(path);
    CHECKF((db = t_state_open(path, &err)), "%s", err.msg);
    if (!db) return;
    CHECKF(!pol_quotas_open(db, &q, &err), "%s", err.msg);
    /* admitted: the prompt charged, the output reserved (capped to the day) */
    CHECK(!pol_quota_admit(q, "a", &lim, 10, 500, now, &t) && t.admitted && t.out == 90);
    /* one at a time */
    CHECK(pol_quota_admit(q, "a", &lim, 1, 1, now, &t2) == CIT_EOVERFLOW &&
          !strcmp(t2.which, "concurrent"));
    pol_quota_finish(q, "a", &t, 20, now + 1);
    pol_quota_usage(q, "a", now + 1, &st);
    CHECK(st.requests == 1 && st.tokens == 30 && st.reserved == 0 && st.concurrent == 0);
    /* refused by the queue: taken back whole */
    CHECK(!pol_quota_admit(q, "a", &lim, 10, 5, now + 2, &t));
    pol_quota_cancel(q, "a", &t, now + 2);
    pol_quota_usage(q, "a", now + 2, &st);
    CHECK(st.requests == 1 && st.tokens == 30 && st.reserved == 0 && st.concurrent == 0);
    CHECK(!t.admitted);
    pol_quota_cancel(q, "a", &t, now + 2); /* twice is harmless */
    /* the second request of the minute runs; the third is refused with its reset */
    CHECK(!pol_quota_admit(q, "a", &lim, 10, 5, now + 3, &t));
    pol_quota_finish(q, "a", &t, 5, now + 3);
    CHECK(pol_quota_admit(q, "a", &lim, 1, 1, now + 4, &t) == CIT_EOVERFLOW &&
          !strcmp(t.which, "requests_per_minute") && t.reset == now - 30 + 60);
    /* across a reopen: the counters were written through */
    pol_quotas_close(q);
    cit_db_close(db);
    CHECKF((db = t_state_open(path, &err)), "%s", err.msg);
    if (!db) return;
    CHECKF(!pol_quotas_open(db, &q, &err), "%s", err.msg);
    pol_quota_usage(q, "a", now + 5, &st);
    CHECKF(st.requests == 2 && st.tokens == 45, "requests %lld tokens %lld", (long long)st.requests,
           (long long)st.tokens);
    /* a cancel after the minute rolled over leaves the new minute alone */
    CHECK(!pol_quota_admit(q, "a", &lim, 1, 1, now + 40, &t)); /* the next minute */
    pol_quota_usage(q, "a", now + 40, &st);
    CHECK(st.requests == 1);
    struct pol_quota_ticket old = t;
    pol_quota_finish(q, "a", &t, 1, now + 41);
    CHECK(!pol_quota_admit(q, "a", &lim, 1, 1, now + 95, &t)); /* the minute after */
    old.admitted = 1; /* as if the earlier one were cancelled only now */
    pol_quota_cancel(q, "a", &old, now + 96);
    pol_quota_usage(q, "a", now + 96, &st);
    CHECK(st.requests == 1);
    pol_quotas_close(q);
    cit_db_close(db);
}
