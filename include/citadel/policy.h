/*
 * policy: the node's jurisdiction policy, and the decision for a request.
 *
 * One YAML file (parsed by libyaml) states who the node is, the data
 * classes in order of sensitivity, which detector finds which class,
 * keyword dictionaries, tenants and their quotas, models and peers with
 * their jurisdictions and the classes each may see, and ordered rules.
 * docs/policy.md describes the file; policy.example.yaml is a complete one.
 *
 * A decision scans the prompt (detect), adds the classes the caller
 * declared (which can raise, never lower), and takes the first rule that
 * matches: local, redact, forward to a named peer, or deny. No rule
 * matching, an unknown tenant or model, a model or peer not cleared for a
 * class, and every internal error all mean deny. The policy's SHA-256
 * goes into every decision.
 */
#ifndef CITADEL_POLICY_H
#define CITADEL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "citadel/core.h"
#include "citadel/detect.h"

#define POL_MAX_CLASSES 32 /* data classes: bits of a uint32_t mask */
#define POL_MAX_NAME    64
#define POL_MAX_FILE    (1u << 20)
#define POL_MAX_ITEMS   1024 /* tenants, models, peers, rules, keywords each */

enum pol_action { POL_DENY, POL_LOCAL, POL_REDACT, POL_FORWARD };
const char *pol_action_name(int action); /* "deny", "local", "redact", "forward" */

struct pol_quota {
    int64_t requests_per_minute; /* 0: unlimited */
    int64_t tokens_per_day;
    int64_t concurrent;
};

struct pol_tenant {
    char name[POL_MAX_NAME];
    struct pol_quota quota;
};

#define POL_MAX_FORWARD 8 /* peers one forward rule may name, tried in order */

enum pol_peer_kind { POL_PEER_CITADEL, POL_PEER_OPENAI };

struct pol_target { /* a model or a peer */
    char id[POL_MAX_NAME];
    char jurisdiction[16];
    uint32_t classes; /* the classes it may see (bit per class index) */
    /* peers only (docs/gateway.md) */
    int kind;                 /* enum pol_peer_kind */
    char url[256];            /* the API root: https://host:port[/v1] */
    char identity[256];       /* citadel: the peer's node key, its vkey line */
    char witness_key[256];    /* citadel: its witness key's vkey line; set: it cosigns our
                                 checkpoints ("": it is not asked) */
    char ca[1024];            /* openai: a CA bundle to trust instead of the system's ("") */
    char api_key_file[1024];  /* openai: the file holding the bearer key ("": none) */
    char model[POL_MAX_NAME]; /* the upstream's name for the model ("": the request's) */
    int timeout_s;            /* an answer's whole time at most (default 120) */
    int connect_timeout_s;    /* a connection's set-up at most (default 5) */
};

struct pol_rule {
    char id[POL_MAX_NAME];
    int line;      /* in the policy file */
    int n_tenants; /* 0: any */
    int *tenants;  /* indices */
    int n_models;  /* 0: any */
    int *models;
    uint32_t any;             /* matches when the request has one of these classes (0: no test) */
    int at_least;             /* the most sensitive class is at least this index (-1: no test) */
    int at_most;              /* ... at most this index (-1: no test) */
    int action;               /* enum pol_action */
    int peer;                 /* POL_FORWARD: index into peers, the first of fwd */
    int fwd[POL_MAX_FORWARD]; /* POL_FORWARD: the peers to try, in order */
    int n_fwd;
    int restore; /* POL_REDACT: put the values back into the answer */
    char reason[256];
};

/* admission: which models border control lets in (docs/border.md). */
struct pol_pin { /* a chat template, pinned by the SHA-256 of its text */
    uint8_t sha256[32];
    char format[16]; /* the renderer it must be recognised as: chatml, llama3, ... */
};

struct pol_admission {
    int present;    /* the policy has the section; without it nothing is admitted */
    int n_licenses; /* SPDX ids (case-insensitive) */
    char (*licenses)[POL_MAX_NAME];
    int n_data_places; /* where training data may come from: ISO 3166 codes, EU, or "*" */
    char (*data_places)[16];
    int n_signer_places; /* jurisdictions of the signers trusted for it; 0: any trusted one */
    char (*signer_places)[16];
    int64_t expires_days; /* an admission lapses after this many days; 0: never */
    int unvetted;         /* 1: `--unvetted` may load a model that was not admitted */
    int n_pins;
    struct pol_pin *pins; /* templates pinned besides the built-in ones */
};

/* place is in list (n entries): equal ignoring case, or the list has "*",
 * or the list has "EU" and place is a member state. */
int pol_place_allowed(const char (*list)[16], int n, const char *place);

/* lockdown: what the node does when it cannot restrict itself after
 * start-up (docs/guard.md): refuse to start, or start and record what is
 * missing. */
enum { POL_LOCKDOWN_REQUIRED = 0, POL_LOCKDOWN_BEST_EFFORT = 1 };

/* site: the node's declared energy source, as the operator states it
 * (citadel vet reports it next to what it can measure; nothing here is
 * measured). Every field is optional. */
struct pol_site {
    int present;
    char grid_operator[128];
    char country[8];         /* ISO 3166-1 alpha-2, upper case; "" when not declared */
    double low_carbon_share; /* 0..1 (a "62%" in the file reads 0.62); -1: not declared */
    char onsite_generation[256];
    char notes[512];
};

/* profile: a jurisdiction profile, a YAML file the policy names
 * (profiles/de-eu.yaml, profiles/jp.yaml; docs/policy.md). The guardrail
 * is the operator's system prompt, put first in every chat this node
 * renders; it is never scanned and never forwarded. The notice is the
 * transparency notice the jurisdiction requires; every answer of the
 * OpenAI endpoints carries it in a header. */
#define POL_PROFILE_MAX_FILE      (64u << 10) /* bytes of the profile file */
#define POL_PROFILE_MAX_GUARDRAIL (16u << 10) /* bytes */
#define POL_PROFILE_MAX_NOTICE    1024        /* bytes (a header: three times that encoded) */
#define POL_MAX_LANG              36          /* a BCP 47 tag, with its NUL */

struct pol_profile_output {
    int append_notice; /* 1: "\n\n" and the notice end every chat answer */
    int max_tokens;    /* 0: no cap; else the most tokens a request may generate here */
};

struct pol_profile {
    int present;
    char id[POL_MAX_NAME];
    char name[128];              /* "" when not given */
    char file[1024];             /* the profile file, as opened */
    int n_jurisdictions;         /* where it applies; the node's jurisdiction is one */
    char (*jurisdictions)[16];   /* ISO 3166 codes, EU (its member states), or "*" */
    int n_languages;
    char (*languages)[POL_MAX_LANG]; /* BCP 47 tags, as written */
    char *guardrail;             /* owned; NULL: none */
    char *notice;                /* owned; NULL: none */
    struct pol_profile_output output;
    uint8_t sha256[32];          /* of the profile file's bytes */
};

struct pol_policy {
    char node_id[POL_MAX_NAME];
    char jurisdiction[16];
    int n_classes;
    char classes[POL_MAX_CLASSES][POL_MAX_NAME]; /* least to most sensitive */
    int det_class[DET_CLASS_COUNT];              /* data class per detector, -1: ignored */
    float det_min_conf[DET_CLASS_COUNT];
    int n_keywords;
    struct det_keyword *keywords;
    int *keyword_class;
    int n_tenants, n_models, n_peers, n_rules;
    struct pol_tenant *tenants;
    struct pol_target *models, *peers;
    struct pol_rule *rules;
    int out_action;   /* answers: POL_REDACT, POL_DENY, or POL_LOCAL (not scanned) */
    int out_at_least; /* the least class acted on in answers (0: any) */
    size_t out_hold;  /* bytes a stream holds back (>= the longest keyword) */
    struct pol_admission adm;
    int lockdown;             /* POL_LOCKDOWN_*; required when the policy does not say */
    struct pol_site site;
    struct pol_profile profile;
    /* SHA-256 of the policy file's bytes; with a profile, of the policy's
     * bytes, one NUL byte (which neither YAML file can hold) and the
     * profile's bytes: a changed profile is a changed policy */
    uint8_t hash[32];
    char hash_hex[65];
    struct det_scanner *scanner;
};

int pol_load(const char *path, struct pol_policy **out /* out */, struct cit_err *err);
void pol_free(struct pol_policy *p);

int pol_license_allowed(const struct pol_policy *p, const char *spdx); /* 1: on the list */
int pol_tenant_index(const struct pol_policy *p, const char *name);
int pol_peer_index(const struct pol_policy *p, const char *id);

struct pol_request {
    const char *tenant;
    const char *model;
    const char *text; /* the prompt, as the engine would see it */
    size_t len;
    const char *declared; /* X-Citadel-Data-Class: class names, comma-separated; may be NULL */
    /* the one-byte joints between the text's parts (chat messages), so a
     * value split across two is found (det_scan_parts); may be NULL */
    const size_t *joints;
    size_t n_joints;
};

struct pol_decision {
    int action;          /* enum pol_action */
    const char *rule_id; /* "" when no rule decided (errors, unknown tenant) */
    const char *peer;    /* POL_FORWARD: the peer's id (the first of fwd) */
    /* POL_FORWARD: the rule's peers cleared for the request's classes, in
     * the order to try them (indices into peers); a peer not cleared is
     * never tried */
    int fwd[POL_MAX_FORWARD];
    int n_fwd;
    int restore;      /* POL_REDACT: restore placeholders in the answer */
    uint32_t classes; /* detected and declared */
    int max_class;    /* index of the most sensitive, -1 for none */
    char reason[256];
    struct det_findings
        findings; /* what detect found (the caller frees it with pol_decision_free) */
};

/* Decides for r. Returns 0 with the decision in d, or an error code with
 * d->action == POL_DENY and the reason in d->reason: callers deny on
 * either. */
int pol_decide(const struct pol_policy *p, const struct pol_request *r,
               struct pol_decision *d /* out */);
void pol_decision_free(struct pol_decision *d);
/* The data class a finding counts as under p, or -1 when the policy drops
 * it (an ignored detector, or below its minimum confidence). */
int pol_finding_class(const struct pol_policy *p, const struct det_finding *f);

/* ---- answers (the policy's 'output' section) ----
 * The generated text is scanned as it grows. What is settled (see
 * det_stable_end) is released; findings the policy counts, of class
 * out_at_least or above, are replaced by "[REDACTED_<DETECTOR>]" under
 * redact, or end the answer before them under deny. Fed the same text in
 * any pieces, the released bytes are the same as for the whole text. */
struct pol_outscan {
    size_t done;      /* text[0, done) is released */
    uint32_t classes; /* classes of the findings acted on */
    int n_found;      /* findings acted on */
    int stopped;      /* deny: the answer ends at done */
};

/* Releases into out what of text[0, len) is settled after o->done, no
 * further than limit (a caller's own hold; len when it has none). final:
 * the text is complete, everything is settled. Returns 0 or an error, on
 * which the caller ends the answer (fail closed). */
int pol_output_step(const struct pol_policy *p, struct pol_outscan *o, const char *text, size_t len,
                    size_t limit, int final, struct cit_buf *out);

/* Runs the cases in text (a YAML list of {name, tenant, model, input,
 * declared, expect, rule}) against p, a line per case into report; counts
 * into n_pass and n_fail. A malformed cases file is an error naming its
 * line. */
int pol_run_cases(const struct pol_policy *p, const char *name, const char *text, size_t len,
                  struct cit_buf *report, int *n_pass /* out */, int *n_fail /* out */,
                  struct cit_err *err);

/* ---- quotas (quota.c) ----
 *
 * Per-tenant counters in the node's SQLite state file: requests in the
 * current UTC minute, tokens in the current UTC day, requests in flight.
 * They survive restarts. */
struct pol_quotas;

/* On the node's state file, whose schema has the quota_usage table. */
int pol_quotas_open(struct cit_db *state, struct pol_quotas **out /* out */, struct cit_err *err);
void pol_quotas_close(struct pol_quotas *q);

/* What admission granted or why it refused. */
struct pol_quota_ticket {
    int admitted;
    int64_t in, out;     /* prompt tokens charged; output tokens reserved */
    int64_t minute, day; /* the windows charged (unix seconds of their start) */
    /* on refusal: the quota ("requests_per_minute", "tokens_per_day",
     * "concurrent"), its limit, what is used, and when it resets (unix
     * seconds; 0 for concurrent: when a request ends) */
    char which[32];
    int64_t limit, used, reset;
};

/* Admits one request of n_in prompt tokens that may generate up to want_out
 * tokens, against lim at unix time now. 0 with t->out the output tokens
 * granted (want_out, or less when the day's budget is nearly spent);
 * CIT_EOVERFLOW when a quota is exhausted (t says which); CIT_EIO when the
 * charge cannot be stored (refused: nothing is served uncounted). */
int pol_quota_admit(struct pol_quotas *q, const char *tenant, const struct pol_quota *lim,
                    int64_t n_in, int64_t want_out, int64_t now,
                    struct pol_quota_ticket *t /* out */);
/* Ends an admitted request that generated n_out tokens. */
void pol_quota_finish(struct pol_quotas *q, const char *tenant, struct pol_quota_ticket *t,
                      int64_t n_out, int64_t now);
/* Takes back an admitted request that never ran (the queue refused it):
 * it counts neither as a request nor for its prompt. */
void pol_quota_cancel(struct pol_quotas *q, const char *tenant, struct pol_quota_ticket *t,
                      int64_t now);

struct pol_quota_state {
    int64_t requests, minute_reset; /* this minute; unix seconds */
    int64_t tokens, reserved, day_reset;
    int64_t concurrent;
};
void pol_quota_usage(struct pol_quotas *q, const char *tenant, int64_t now,
                     struct pol_quota_state *s /* out */);

#endif
