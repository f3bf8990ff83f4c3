/* policy: parsing with errors that name the line, decisions for every
 * action, rule order, class order, declared labels, unknown tenant and
 * model, and an injected detector failure giving deny. */
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

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

/* ---- lockdown, site, and jurisdiction profiles ---- */

static const char head6[] = "version: 1\n"                                           /* 1 */
                            "node: {id: n1, jurisdiction: DE}\n"                     /* 2 */
                            "classes: [public, personal]\n"                          /* 3 */
                            "tenants: {t1: }\n"                                      /* 4 */
                            "models: {m: {jurisdiction: DE, classes: [public]}}\n"   /* 5 */
                            "rules: [{id: r1, action: local}]\n";                    /* 6 */

static struct pol_policy *load_with(const char *name, const char *more, struct cit_err *err)
{
    char text[4096];
    struct pol_policy *p = NULL;
    snprintf(text, sizeof(text), "%s%s", head6, more);
    return pol_parse(name, text, strlen(text), &p, err) ? NULL : p;
}

void test_policy_lockdown_site(void)
{
    struct cit_err err = {{0}};
    struct pol_policy *p = load_with("test.yaml", "", &err);
    CHECKF(p, "%s", err.msg);
    /* absent: lockdown required, no site, no share declared */
    CHECK(p->lockdown == POL_LOCKDOWN_REQUIRED && !p->site.present &&
          p->site.low_carbon_share == -1 && !p->profile.present);
    pol_free(p);
    p = load_with("test.yaml",
                  "lockdown: best-effort\n"
                  "site:\n"
                  "  grid_operator: 50Hertz Transmission\n"
                  "  country: de\n"
                  "  low_carbon_share: 62%\n"
                  "  onsite_generation: rooftop PV 120 kW\n"
                  "  notes: contract for certified hydro power since 2025\n",
                  &err);
    CHECKF(p, "%s", err.msg);
    CHECK(p->lockdown == POL_LOCKDOWN_BEST_EFFORT && p->site.present);
    CHECK(!strcmp(p->site.grid_operator, "50Hertz Transmission") &&
          !strcmp(p->site.country, "DE") &&
          !strcmp(p->site.onsite_generation, "rooftop PV 120 kW") &&
          strstr(p->site.notes, "hydro"));
    CHECKF(p->site.low_carbon_share > 0.6199 && p->site.low_carbon_share < 0.6201, "%f",
           p->site.low_carbon_share);
    pol_free(p);
    p = load_with("test.yaml", "lockdown: required\nsite: {low_carbon_share: 0.35}\n", &err);
    CHECKF(p, "%s", err.msg);
    CHECK(p->lockdown == POL_LOCKDOWN_REQUIRED && p->site.present && !p->site.country[0] &&
          p->site.low_carbon_share == 0.35);
    pol_free(p);
    static const struct {
        const char *more, *want;
    } bad[] = {
        {"lockdown: off\n",
         "test.yaml:7: lockdown is required (refuse to start without the kernel's restrictions) "
         "or best-effort"},
        {"lockdown: [required]\n", "test.yaml:7: lockdown is required"},
        {"site:\n  country: DEU\n",
         "test.yaml:8: site.country is an ISO 3166-1 alpha-2 code such as DE or JP, not 'DEU'"},
        {"site:\n  country: D1\n", "test.yaml:8: site.country"},
        {"site:\n  grid_operator: x\n  low_carbon_share: 1.5\n",
         "test.yaml:9: site.low_carbon_share is a share from 0 to 1 (0.62) or a percentage (62%)"},
        {"site: {low_carbon_share: 120%}\n", "test.yaml:7: site.low_carbon_share"},
        {"site: {low_carbon_share: -0.1}\n", "test.yaml:7: site.low_carbon_share"},
        {"site: {low_carbon_share: lots}\n", "not 'lots'"},
        {"site: {low_carbon_share: 50%%}\n", "test.yaml:7: site.low_carbon_share"},
        {"site:\n  grid: x\n",
         "test.yaml:8: unknown key 'grid' in site; expected one of: grid_operator, country, "
         "low_carbon_share, onsite_generation, notes"},
        {"site:\n  grid_operator: [a, b]\n", "test.yaml:8: site.grid_operator must be text"},
        {"site: {notes: \"a\\0b\"}\n", "site.notes holds a NUL byte"},
        {"site: solar\n", "test.yaml:7: site must be a mapping"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECKF(!load_with("test.yaml", bad[i].more, &err), "bad %zu parsed", i);
        CHECKF(strstr(err.msg, bad[i].want), "bad %zu: %s", i, err.msg);
    }
    /* a string at its limit passes, one byte over names the limit */
    char more[1200];
    snprintf(more, sizeof(more), "site: {onsite_generation: %0255d}\n", 0);
    CHECKF((p = load_with("test.yaml", more, &err)), "%s", err.msg);
    pol_free(p);
    snprintf(more, sizeof(more), "site: {onsite_generation: %0256d}\n", 0);
    CHECK(!load_with("test.yaml", more, &err) &&
          strstr(err.msg, "site.onsite_generation is 256 bytes; at most 255"));
}

/* A profile file in the scratch folder. */
static int write_profile(const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", t_tmpdir(), name);
    CHECK_RET(!t_write_file(path, text, strlen(text)), "cannot write %s", path);
    return 0;
}

static const char good_profile[] = "profile:\n"                                   /* 1 */
                                   "  id: de-test\n"                              /* 2 */
                                   "  name: Germany (test)\n"                     /* 3 */
                                   "  jurisdictions: [DE, EU]\n"                  /* 4 */
                                   "  languages: [de, en-GB, zh-Hant-TW]\n"       /* 5 */
                                   "  guardrail: |\n"                             /* 6 */
                                   "    Be careful.\n"                            /* 7 */
                                   "    Say you are an AI.\n"                     /* 8 */
                                   "  notice: Sie sprechen mit einer KI.\n"       /* 9 */
                                   "  output: {append_notice: true, max_tokens: 64}\n";

void test_policy_profile(void)
{
    struct cit_err err = {{0}};
    struct pol_policy *p, *q;
    char name[1024], path[1024], more[3072], text[4096], hex[65];
    snprintf(name, sizeof(name), "%s/policy.yaml", t_tmpdir());
    if (write_profile("prof-good.yaml", good_profile)) return;

    /* the fields, and the path from the policy's folder */
    CHECKF((p = load_with(name, "profile: prof-good.yaml\n", &err)), "%s", err.msg);
    const struct pol_profile *f = &p->profile;
    snprintf(path, sizeof(path), "%s/prof-good.yaml", t_tmpdir());
    CHECK(f->present && !strcmp(f->id, "de-test") && !strcmp(f->name, "Germany (test)"));
    CHECK(!strcmp(f->file, path));
    CHECK(f->n_jurisdictions == 2 && !strcmp(f->jurisdictions[1], "EU"));
    CHECK(f->n_languages == 3 && !strcmp(f->languages[0], "de") &&
          !strcmp(f->languages[2], "zh-Hant-TW"));
    CHECKF(f->guardrail && !strcmp(f->guardrail, "Be careful.\nSay you are an AI.\n"), "%s",
           f->guardrail ? f->guardrail : "(none)");
    CHECK(f->notice && !strcmp(f->notice, "Sie sprechen mit einer KI."));
    CHECK(f->output.append_notice == 1 && f->output.max_tokens == 64);

    /* the hash: the policy's bytes, a NUL, the profile's bytes */
    {
        crypto_hash_sha256_state h;
        uint8_t want[32], prof[32];
        snprintf(text, sizeof(text), "%s%s", head6, "profile: prof-good.yaml\n");
        crypto_hash_sha256_init(&h);
        crypto_hash_sha256_update(&h, (const unsigned char *)text, strlen(text));
        crypto_hash_sha256_update(&h, (const unsigned char *)"", 1);
        crypto_hash_sha256_update(&h, (const unsigned char *)good_profile, strlen(good_profile));
        crypto_hash_sha256_final(&h, want);
        CHECK(!memcmp(p->hash, want, 32));
        sodium_bin2hex(hex, sizeof(hex), want, 32);
        CHECK(!strcmp(p->hash_hex, hex));
        crypto_hash_sha256(prof, (const unsigned char *)good_profile, strlen(good_profile));
        CHECK(!memcmp(f->sha256, prof, 32));
    }
    /* one byte changed in the profile (not in the policy) changes the hash */
    snprintf(text, sizeof(text), "%s", good_profile);
    *strstr(text, "careful") = 'C';
    if (write_profile("prof-good.yaml", text)) return;
    CHECKF((q = load_with(name, "profile: prof-good.yaml\n", &err)), "%s", err.msg);
    CHECK(memcmp(p->hash, q->hash, 32) && strcmp(p->hash_hex, q->hash_hex));
    CHECK(!strncmp(q->profile.guardrail, "Be Careful", 10));
    pol_free(q);
    pol_free(p);
    if (write_profile("prof-good.yaml", good_profile)) return;

    /* a member state's node takes an EU profile; a node elsewhere is
     * refused, the message naming the profile's file and line */
    {
        char t2[4096];
        snprintf(t2, sizeof(t2), "%s", head6);
        memcpy(strstr(t2, "jurisdiction: DE}"), "jurisdiction: FR}", 17);
        strcat(t2, "profile: prof-good.yaml\n");
        CHECKF(!pol_parse(name, t2, strlen(t2), &q, &err), "%s", err.msg);
        pol_free(q);
        memcpy(strstr(t2, "jurisdiction: FR}"), "jurisdiction: JP}", 17);
        CHECK(pol_parse(name, t2, strlen(t2), &q, &err) == CIT_EFORMAT);
        snprintf(more, sizeof(more),
                 "%s:4: profile 'de-test' is for DE, EU; this node's jurisdiction is JP "
                 "(node.jurisdiction in %s)",
                 path, name);
        CHECKF(strstr(err.msg, more), "%s", err.msg);
    }
    /* the shipped profiles: real content, and each for its own jurisdiction */
    {
        static const struct {
            const char *jur, *file, *id;
        } ship[] = {{"DE", "de-eu.yaml", "de-eu"}, {"JP", "jp.yaml", "jp"}};
        char cwd[512];
        CHECK(getcwd(cwd, sizeof(cwd)));
        for (int i = 0; i < 2; i++) {
            char t2[4096];
            snprintf(t2, sizeof(t2),
                     "version: 1\nnode: {id: n1, jurisdiction: %s}\nclasses: [public]\n"
                     "tenants: {t1: }\nmodels: {m: {jurisdiction: %s, classes: [public]}}\n"
                     "rules: [{id: r1, action: local}]\nprofile: profiles/%s\n",
                     ship[i].jur, ship[i].jur, ship[i].file);
            snprintf(path, sizeof(path), "%s/policy.yaml", cwd);
            CHECKF(!pol_parse(path, t2, strlen(t2), &q, &err), "%s", err.msg);
            CHECK(!strcmp(q->profile.id, ship[i].id) && q->profile.guardrail &&
                  q->profile.notice && q->profile.n_languages == 2);
            if (i == 0)
                CHECK(strstr(q->profile.notice, "KI-System") &&
                      strstr(q->profile.guardrail, "GDPR"));
            else
                CHECK(strstr(q->profile.notice, "AI（人工知能）") &&
                      strstr(q->profile.guardrail, "APPI") &&
                      !strcmp(q->profile.languages[0], "ja"));
            pol_free(q);
            /* the other one is refused */
            snprintf(strstr(t2, "profiles/") + 9, 16, "%s\n", ship[1 - i].file);
            CHECK(pol_parse(path, t2, strlen(t2), &q, &err) == CIT_EFORMAT);
            CHECKF(strstr(err.msg, ship[1 - i].file) &&
                       strstr(err.msg, "this node's jurisdiction is"),
                   "%s", err.msg);
        }
    }

    /* errors in the profile name its file and line; in the policy, the policy's */
    static const struct {
        const char *profile, *want;
    } bad[] = {
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  guardrails: be nice\n",
         ":4: unknown key 'guardrails' in profile; expected one of: id, name, jurisdictions, "
         "languages, guardrail, notice, output"},
        {"profil:\n  id: x\n", ":1: unknown key 'profil' in the profile file; expected one of: "
                               "profile"},
        {"", ":1: the profile file is empty"},
        {"profile:\n  jurisdictions: [DE]\n", ":2: profile needs an 'id'"},
        {"profile:\n  id: x\n", ":2: profile 'x' needs 'jurisdictions'"},
        {"profile:\n  id: x y\n  jurisdictions: [DE]\n", ":2: profile.id 'x y': use letters"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  languages: [german]\n",
         ":4: profile.languages: 'german' is not a BCP 47 tag"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  languages: [de, en-]\n",
         ":4: profile.languages: 'en-' is not a BCP 47 tag"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  languages: [de-toolongsubtag]\n",
         "is not a BCP 47 tag"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  languages: [de, DE]\n",
         ":4: profile.languages: 'DE' is listed twice"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  languages: de\n",
         ":4: profile.languages must be a list of BCP 47 tags"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  guardrail: \"\"\n",
         ":4: profile.guardrail must be text"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  notice: {a: b}\n",
         ":4: profile.notice must be text"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  output:\n    append_notice: true\n",
         ":5: profile.output.append_notice is true, but the profile has no 'notice'"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  notice: n\n  output:\n    append_notice: "
         "yes\n",
         ":6: profile.output.append_notice is true or false"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  output: {max_tokens: -1}\n",
         ":4: profile.output.max_tokens must be a whole number from 0 to 1048576"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  output: {max_tokens: 5, stream: no}\n",
         ":4: unknown key 'stream' in profile.output"},
        {"profile:\n  id: x\n  jurisdictions: [DE, [EU]]\n",
         ":3: profile.jurisdictions: each entry"},
        {"profile:\n  id: x\n  jurisdictions: [DE]\n  notice: [unclosed\n", ":5: not valid YAML"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (write_profile("prof-bad.yaml", bad[i].profile)) return;
        CHECKF(!load_with(name, "profile: prof-bad.yaml\n", &err), "bad %zu parsed", i);
        snprintf(path, sizeof(path), "%s/prof-bad.yaml%s", t_tmpdir(), bad[i].want);
        CHECKF(strstr(err.msg, path) || (bad[i].want[0] != ':' && strstr(err.msg, bad[i].want)),
               "bad %zu: %s", i, err.msg);
    }
    /* a notice or guardrail over its limit */
    {
        struct cit_buf b = {0};
        cit_buf_printf(&b, "profile:\n  id: x\n  jurisdictions: [DE]\n  notice: ");
        for (int i = 0; i < 1025; i++) cit_buf_add(&b, "n", 1);
        cit_buf_add(&b, "\n", 2);
        if (write_profile("prof-bad.yaml", b.p)) return;
        cit_buf_free(&b);
        CHECK(!load_with(name, "profile: prof-bad.yaml\n", &err) &&
              strstr(err.msg, ":4: profile.notice is 1025 bytes; at most 1024"));
    }
    CHECK(!load_with(name, "profile: nowhere.yaml\n", &err));
    CHECKF(strstr(err.msg, name) && strstr(err.msg, ":7: profile '") &&
               strstr(err.msg, "nowhere.yaml' cannot be read: no such file"),
           "%s", err.msg);
    CHECK(!load_with(name, "profile: [a]\n", &err) &&
          strstr(err.msg, ":7: profile must be a path"));
    /* a profile too large for its limit */
    {
        char *big = cit_calloc(POL_PROFILE_MAX_FILE + 2, 1);
        CHECK(big);
        memset(big, '#', POL_PROFILE_MAX_FILE + 1);
        snprintf(path, sizeof(path), "%s/prof-big.yaml", t_tmpdir());
        CHECK(!t_write_file(path, big, POL_PROFILE_MAX_FILE + 1));
        cit_free(big);
        CHECK(!load_with(name, "profile: prof-big.yaml\n", &err));
        CHECKF(strstr(err.msg, ":7: profile '") && strstr(err.msg, "larger than 65536 bytes"), "%s",
               err.msg);
    }
    /* every allocation failure while loading a profile unwinds with an
     * error; the first nth that loads is past the last allocation */
    long loaded_at = 0;
    for (long nth = 1; nth < 400 && !loaded_at; nth++) {
        cit_alloc_fail_at(nth);
        p = load_with(name, "profile: prof-good.yaml\nsite: {country: JP}\n", &err);
        cit_alloc_fail_at(0);
        if (p) loaded_at = nth;
        pol_free(p);
    }
    CHECKF(loaded_at > 1, "loaded_at %ld", loaded_at);
}
