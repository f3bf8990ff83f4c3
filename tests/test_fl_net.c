/*
 * Federated learning over the network: the coordinator and every
 * participant are separate `citadel fl serve` / `fl join` processes talking
 * TLS over loopback. Participants vanish (or hang) at chosen stages; the
 * coordinator's sum must still equal, exactly, the plain sum of the
 * quantized contributions that the surviving contributors wrote down.
 * A lying coordinator (this process, writing the frames it likes) meets a
 * real participant, which must refuse it. In process: the orchestration
 * frames they exchange, the participant's check of the final model and the
 * roster file they read.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../src/fl/fl_int.h"
#include "citadel/fl.h"
#include "citadel/ledger.h"
#include "test.h"
#include "../src/core/core_int.h"

/* The binary, as an absolute path: the federations run in their own directory. */
static const char *bin(void)
{
    static char path[4096];
    const char *b = getenv("CITADEL_BIN") ? getenv("CITADEL_BIN") : "build/citadel";
    if (!path[0] && !realpath(b, path)) snprintf(path, sizeof(path), "%s", b);
    return path;
}

/* A federation directory: keys for a coordinator and n members, the
 * roster, and breast-cancer split IID into n parts. */
static int setup(const char *dir, int n)
{
    struct cit_err err = {0};
    struct ledger_skey k;
    struct fl_data ds, *parts = calloc((size_t)n, sizeof(*parts));
    struct cit_buf roster = {0};
    char p[600], vp[600];
    int *part = NULL, rc = -1;
    mkdir(dir, 0755);
    snprintf(p, sizeof(p), "%s/coord.key", dir);
    snprintf(vp, sizeof(vp), "%s/coord.vkey", dir);
    CHECK_RET(ledger_key_load(p, vp, "coord", &k, &err) == 0, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "node%d", i);
        snprintf(p, sizeof(p), "%s/%s.key", dir, name);
        snprintf(vp, sizeof(vp), "%s/%s.vkey", dir, name);
        CHECK_RET(ledger_key_load(p, vp, name, &k, &err) == 0, "%s", err.msg);
        {
            size_t len;
            char *v = t_read_file(vp, &len);
            CHECK_RET(v != NULL, "%s", vp);
            cit_buf_add(&roster, v, len);
            cit_free(v);
        }
    }
    snprintf(p, sizeof(p), "%s/roster", dir);
    CHECK_RET(t_write_file(p, roster.p, roster.len) == 0, "%s", p);
    cit_buf_free(&roster);
    CHECK_RET(fl_data_load("breast-cancer", NULL, &ds, &err) == 0, "%s", err.msg);
    part = malloc(ds.n * sizeof(int));
    if (part && parts && !fl_split(&ds, n, FL_SPLIT_IID, 0, 7, part, &err) &&
        !fl_data_parts(&ds, part, n, parts)) {
        rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            snprintf(p, sizeof(p), "%s/c%d.x.idx", dir, i);
            snprintf(vp, sizeof(vp), "%s/c%d.y.idx", dir, i);
            parts[i].classes = ds.classes;
            rc = fl_data_write(&parts[i], p, vp, &err);
        }
        for (int i = 0; i < n; i++) fl_data_free(&parts[i]);
    }
    fl_data_free(&ds);
    free(part);
    free(parts);
    CHECK_RET(rc == 0, "split: %s", err.msg);
    return 0;
}

/* Runs a coordinator and n participants; extra[i] are participant i's own
 * flags (may be NULL), serve_flags the coordinator's. Returns the
 * coordinator's exit status; its stdout in *out. */
static int federate(const char *dir, int n, const char *serve_flags, const char *const *extra,
                    char **out)
{
    struct cit_buf sh = {0};
    char pol[4096];
    int rc;
    /* each node's ledger is named after its policy's node id */
    CHECK_RET(realpath("policy.example.yaml", pol), "policy.example.yaml: not found");
    cit_buf_printf(&sh,
                   "cd %s || exit 9; rm -f port sum up* model*; "
                   "%s fl serve --key coord.key --roster roster --listen 127.0.0.1:0 "
                   "--port-file port --dump-sum sum --out model.c --ledger lc --policy %s "
                   "--standardize --test breast-cancer --lr 0.05 --local-epochs 1 %s > serve.out "
                   "2> serve.err & "
                   "S=$!; i=0; while [ ! -s port ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); "
                   "done; P=$(cat port); ",
                   dir, bin(), pol, serve_flags);
    for (int i = 0; i < n; i++)
        cit_buf_printf(&sh,
                       "%s fl join --key node%d.key --roster roster --coordinator coord.vkey "
                       "--connect 127.0.0.1:$P --data c%d.x.idx --standardize --ledger l%d "
                       "--policy %s --dump-update up%d --out model.%d %s > j%d.out 2> j%d.err & ",
                       bin(), i, i, i, pol, i, i, extra && extra[i] ? extra[i] : "", i, i);
    cit_buf_printf(&sh, "wait $S; R=$?; wait; cat serve.out; exit $R");
    {
        char *cmd = malloc(sh.len + 32);
        snprintf(cmd, sh.len + 32, "sh -c '%s'", sh.p);
        rc = t_run(cmd, out);
        free(cmd);
    }
    cit_buf_free(&sh);
    return rc;
}

static uint32_t *read_u32s(const char *path, size_t *n)
{
    size_t len;
    char *p = t_read_file(path, &len);
    if (p) *n = len / 4;
    return (uint32_t *)p;
}

/* The coordinator's sum against the plain sum of the contributions of
 * those in want[] (1: contributed). */
static int check_sum(const char *dir, int n, const int *want)
{
    char p[600];
    size_t d = 0, dd = 0;
    uint32_t *sum, *acc;
    snprintf(p, sizeof(p), "%s/sum", dir);
    sum = read_u32s(p, &d);
    CHECK_RET(sum && d > 1, "no sum from the coordinator");
    acc = calloc(d, 4);
    for (int i = 0; i < n; i++) {
        uint32_t *u;
        if (!want[i]) continue;
        snprintf(p, sizeof(p), "%s/up%d", dir, i);
        u = read_u32s(p, &dd);
        CHECK_RET(u && dd == d, "participant %d wrote no contribution", i);
        for (size_t j = 0; j < d; j++) acc[j] += u[j];
        cit_free(u);
    }
    for (size_t j = 0; j < d; j++) CHECK_RET(acc[j] == sum[j], "the sums differ at entry %zu", j);
    /* the total weight entry counts the contributors (each below 1) */
    CHECK_RET(sum[d - 1] != 0, "empty sum");
    free(acc);
    cit_free(sum);
    return 0;
}

static const char *stages[] = {"keys", "shares", "masked", "sign", "reveal"};

/* One round with participants vanishing at the given stages (-1: stays). */
static int drop_run(int n, const int *drop, const char *serve_flags)
{
    char dir[512], **extra = calloc((size_t)n, sizeof(char *)), *out = NULL;
    int *want = calloc((size_t)n, sizeof(int)), rc, dropped = 0;
    snprintf(dir, sizeof(dir), "%s/fed%d", t_tmpdir(), n);
    for (int i = 0; i < n; i++) {
        want[i] = drop[i] < 0 || drop[i] >= 3; /* past the masked input: in the sum */
        if (drop[i] >= 0) {
            extra[i] = malloc(64);
            snprintf(extra[i], 64, "--drop-at %s", stages[drop[i]]);
            dropped++;
        }
    }
    rc = federate(dir, n, serve_flags, (const char *const *)extra, &out);
    for (int i = 0; i < n; i++) free(extra[i]);
    free(extra);
    if (rc != 0) {
        t_fail(__FILE__, __LINE__, "n = %d, %d dropped: the coordinator failed (%d): %s", n,
               dropped, rc, out ? out : "");
        free(want);
        cit_free(out);
        return -1;
    }
    CHECK_RET(strstr(out, "round 1:") != NULL, "%s", out);
    cit_free(out);
    rc = check_sum(dir, n, want);
    free(want);
    return rc;
}

void test_fl_net_sum(void)
{
    char dir[512];
    /* n = 3 (t = 2): one participant vanishes, at each stage in turn */
    snprintf(dir, sizeof(dir), "%s/fed3", t_tmpdir());
    if (setup(dir, 3)) return;
    for (int s = 0; s < 5; s++) {
        int drop[3] = {-1, -1, -1};
        drop[s % 3] = s;
        if (drop_run(3, drop, "--rounds 1")) return;
    }
    /* n = 10, full graph, t = 6: n - t = 4 vanish, at four different stages */
    snprintf(dir, sizeof(dir), "%s/fed10", t_tmpdir());
    if (setup(dir, 10)) return;
    {
        int drop[10] = {-1, 0, -1, 1, -1, 2, -1, 4, -1, -1};
        if (drop_run(10, drop, "--rounds 1")) return;
    }
    /* n = 50, full graph, t = 26: n - t = 24 vanish, spread over all five stages */
    snprintf(dir, sizeof(dir), "%s/fed50", t_tmpdir());
    if (setup(dir, 50)) return;
    {
        int drop[50];
        for (int i = 0; i < 50; i++) drop[i] = i % 2 && i < 48 ? (i / 2) % 5 : -1;
        if (drop_run(50, drop, "--rounds 1 --k 49 --t 26 --stage-timeout 120")) return;
    }
}

/* Several rounds: everyone ends with the coordinator's model, every ledger
 * holds the same sum digest for every round and verifies; one more vanishing
 * than the threshold allows fails the round without a sum; a participant
 * that hangs is dropped at the deadline. */
void test_fl_net_rounds(void)
{
    char dir[512], p[600], *out = NULL, *log;
    size_t len;
    snprintf(dir, sizeof(dir), "%s/fedr", t_tmpdir());
    if (setup(dir, 3)) return;
    CHECKF(federate(dir, 3, "--rounds 3", NULL, &out) == 0, "%s", out);
    CHECKF(strstr(out, "round 3: 3 selected, 3 ready, 3 contributors"), "%s", out);
    {
        const char *acc = strstr(strstr(out, "round 3"), "test accuracy ");
        CHECK(acc && atof(acc + 14) > 0.9);
    }
    cit_free(out);
    for (int i = 0; i < 3; i++) {
        char a[600], b[600];
        size_t la, lb;
        char *ma, *mb;
        snprintf(a, sizeof(a), "%s/model.c", dir);
        snprintf(b, sizeof(b), "%s/model.%d", dir, i);
        ma = t_read_file(a, &la);
        mb = t_read_file(b, &lb);
        CHECK(ma && mb && la == lb && !memcmp(ma, mb, la));
        cit_free(ma);
        cit_free(mb);
        /* each checked it: the last TASK's model stepped by the sum SA_DONE announced */
        snprintf(b, sizeof(b), "%s/j%d.out", dir, i);
        mb = t_read_file(b, &lb);
        CHECKF(mb && strstr(mb, "final model checked: round 3's model plus the mean of its sum "
                                "(the sum its SA_DONE announced)"),
               "participant %d: %s", i, mb ? mb : "");
        cit_free(mb);
    }
    snprintf(p, sizeof(p), "%s/lc/log", dir);
    log = t_read_file(p, &len);
    CHECK(log);
    for (int r = 1; r <= 3; r++) {
        char key[64], digest[65];
        const char *e;
        snprintf(key, sizeof(key), "\"request\":\"round-%d\",\"digest\":\"", r);
        e = strstr(log, key);
        CHECKF(e && strstr(e, "\"action\":\"aggregate\""), "round %d not in the ledger", r);
        memcpy(digest, e + strlen(key), 64);
        digest[64] = 0;
        for (int i = 0; i < 3; i++) {
            char *pl, want[200];
            snprintf(p, sizeof(p), "%s/l%d/log", dir, i);
            pl = t_read_file(p, &len);
            snprintf(want, sizeof(want), "%s%s\"", key, digest);
            CHECKF(pl && strstr(pl, want), "participant %d's ledger lacks round %d's sum", i, r);
            cit_free(pl);
        }
    }
    CHECK(strstr(log, "participants=node0,node1,node2") && strstr(log, "keys="));
    cit_free(log);
    {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "%s audit verify --dir %s/l1", bin(), dir);
        CHECK(t_run(cmd, &out) == 0 && strstr(out, "OK"));
        cit_free(out);
    }
    /* two of three vanish after sending keys: below t = 2, the round fails */
    {
        const char *extra[3] = {"--drop-at shares", "--drop-at shares", NULL};
        CHECK(federate(dir, 3, "--rounds 1", extra, &out) == 0);
        CHECKF(!strstr(out, "round 1:"), "%s", out);
        cit_free(out);
        snprintf(p, sizeof(p), "%s/lc/log", dir);
        log = t_read_file(p, &len);
        CHECK(log && strstr(log, "\"action\":\"round-failed\"") && strstr(log, "threshold"));
        cit_free(log);
        snprintf(p, sizeof(p), "%s/sum", dir);
        CHECK(access(p, F_OK) != 0);
    }
    /* one hangs at the shares: dropped after the 2 s deadline, the round completes */
    {
        const char *extra[3] = {NULL, "--stall-at shares", NULL};
        int want[3] = {1, 0, 1};
        CHECK(federate(dir, 3, "--rounds 1 --stage-timeout 2", extra, &out) == 0);
        CHECKF(strstr(out, "round 1: 3 selected, 3 ready, 2 contributors"), "%s", out);
        cit_free(out);
        if (check_sum(dir, 3, want)) return;
    }
}

/* An honest plain federation: the participants allow plain mode, and each
 * checks the final model bit for bit against the last round's sum. The same
 * coordinator meets participants with the default minimum mode: each
 * refuses the plain round before it trains, and says why. */
void test_fl_net_honest(void)
{
    char dir[512], p[600], *out = NULL, *txt;
    size_t len;
    const char *plain[3] = {"--min-mode plain", "--min-mode plain", "--min-mode plain"};
    snprintf(dir, sizeof(dir), "%s/fedhon", t_tmpdir());
    if (setup(dir, 3)) return;
    CHECKF(federate(dir, 3, "--rounds 2 --plain", plain, &out) == 0, "%s", out);
    CHECKF(strstr(out, "round 2: 3 selected, 3 ready, 3 contributors"), "%s", out);
    cit_free(out);
    for (int i = 0; i < 3; i++) {
        char *ma, *mb;
        size_t la, lb;
        snprintf(p, sizeof(p), "%s/j%d.out", dir, i);
        txt = t_read_file(p, &len);
        CHECKF(txt &&
                   strstr(txt, "final model checked: round 2's model plus the mean of its sum\n"),
               "participant %d: %s", i, txt ? txt : "no output");
        cit_free(txt);
        snprintf(p, sizeof(p), "%s/model.c", dir);
        ma = t_read_file(p, &la);
        snprintf(p, sizeof(p), "%s/model.%d", dir, i);
        mb = t_read_file(p, &lb);
        CHECK(ma && mb && la == lb && !memcmp(ma, mb, la));
        cit_free(ma);
        cit_free(mb);
    }
    /* the default minimum mode: secure aggregation; nobody trains for a plain round */
    CHECK(federate(dir, 3, "--rounds 1 --plain", NULL, &out) == 0);
    CHECKF(!strstr(out, "round 1:"), "%s", out);
    cit_free(out);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/j%d.err", dir, i);
        txt = t_read_file(p, &len);
        CHECKF(txt && strstr(txt, "citadel fl join: round 1: the coordinator announced mode "
                                  "plain, weaker than this node's minimum mode secagg"),
               "participant %d: %s", i, txt ? txt : "no output");
        cit_free(txt);
        snprintf(p, sizeof(p), "%s/up%d", dir, i);
        CHECK(access(p, F_OK) != 0);
    }
    snprintf(p, sizeof(p), "%s/lc/log", dir);
    txt = t_read_file(p, &len);
    CHECK(txt && strstr(txt, "ready=0 declined=3"));
    cit_free(txt);
}

/* ---- a lying coordinator ----
 * This process holds the coordinator's key and listens; one `citadel fl
 * join` (node0 of a setup() directory) connects, and the test writes it the
 * frames it likes with the frame helpers. Every wait is bounded: the
 * participant gives up after 30 s without a frame, the test after 60 s. */
struct liar {
    char dir[512];
    struct ledger_skey key;
    struct fl_roster *roster;
    struct ssl_ctx_st *ctx;
    int lfd;
    pid_t pid;
    struct fl_conn c;
    struct fl_task t; /* the TASK liar_task sends, but for round, rounds and mode */
    float *w;         /* (t.d) its model */
    struct cit_buf f;
};

static int liar_open(struct liar *l, const char *dir, const char *flags)
{
    struct cit_err err = {0};
    struct fl_data ds;
    struct cit_buf sh = {0};
    char p[600], vp[600], pol[4096];
    int port;
    memset(l, 0, sizeof(*l));
    l->lfd = -1;
    l->c.fd = -1;
    snprintf(l->dir, sizeof(l->dir), "%s", dir);
    signal(SIGPIPE, SIG_IGN); /* a participant that left must not end the test */
    CHECK_RET(realpath("policy.example.yaml", pol), "policy.example.yaml: not found");
    snprintf(p, sizeof(p), "%s/coord.key", dir);
    snprintf(vp, sizeof(vp), "%s/coord.vkey", dir);
    CHECK_RET(ledger_key_load(p, vp, NULL, &l->key, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof(p), "%s/roster", dir);
    CHECK_RET(fl_roster_load(p, &l->roster, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof(p), "%s/c0.x.idx", dir);
    CHECK_RET(fl_data_load(p, NULL, &ds, &err) == 0, "%s", err.msg);
    l->t.arch.arch = FL_LOGREG;
    l->t.arch.inputs = (int)ds.d;
    l->t.arch.classes = ds.classes;
    fl_data_free(&ds);
    l->t.rc.clip = 100;
    l->t.rc.max_clients = 3;
    l->t.rc.local_epochs = 1;
    l->t.o.batch = 32;
    l->t.o.lr = 0.05f;
    l->t.o.seed = 5;
    l->t.dp_min = 1;
    CHECK_RET((l->t.d = (uint32_t)fl_arch_params(&l->t.arch, &err)) > 0, "%s", err.msg);
    CHECK_RET((l->w = calloc(l->t.d, sizeof(float))) != NULL, "out of memory");
    fl_arch_init(&l->t.arch, l->w, 3);
    CHECK_RET(gw_tls_new(1, &l->key, l->roster->pk, l->roster->n, &l->ctx, &err) == 0, "%s",
              err.msg);
    CHECK_RET((l->lfd = fl_net_listen("127.0.0.1:0", &port, &err)) >= 0, "%s", err.msg);
    cit_buf_printf(&sh,
                   "cd %s && rm -rf up0 model.0 l0 citadel.db citadel.db-wal citadel.db-shm && "
                   "exec %s fl join --key node0.key --roster roster "
                   "--coordinator coord.vkey --connect 127.0.0.1:%d --data c0.x.idx --standardize "
                   "--ledger l0 --policy %s --dump-update up0 --out model.0 --timeout 30 %s "
                   "> j0.out 2> j0.err",
                   dir, bin(), port, pol, flags);
    l->pid = fork();
    if (l->pid == 0) {
        execl("/bin/sh", "sh", "-c", sh.p, (char *)NULL);
        _exit(127);
    }
    cit_buf_free(&sh);
    CHECK_RET(l->pid > 0, "fork failed");
    CHECK_RET(fl_net_accept(l->ctx, l->lfd, 30, &l->c, &err) == 0, "no participant: %s", err.msg);
    fl_net_nonblock(&l->c, 30000);
    return 0;
}

static int liar_task(struct liar *l, uint64_t round, uint32_t rounds, int mode)
{
    struct cit_err err = {0};
    l->t.round = round;
    l->t.rounds = rounds;
    l->t.mode = mode;
    CHECK_RET(fl_task_write(&l->t, l->w, &l->f) == 0, "TASK");
    CHECK_RET(fl_net_send(&l->c, l->f.p, l->f.len, &err) == 0, "%s", err.msg);
    return 0;
}

/* The participant's READY for round: 1 accepted, 0 declined (rd->why its
 * reason, NUL-terminated, in l->f), -1 none or another frame. */
static int liar_ready(struct liar *l, uint64_t round, size_t body, struct fl_ready *rd)
{
    struct cit_err err = {0};
    int a;
    CHECK_RET(fl_net_recv(&l->c, &l->f, &err) == 0, "no READY: %s", err.msg);
    a = fl_ready_read((const uint8_t *)l->f.p, l->f.len, round, body, rd, &err);
    CHECK_RET(a >= 0, "not a READY of round %llu: %s", (unsigned long long)round, err.msg);
    if (!a) {
        size_t at = (size_t)(rd->why - l->f.p);
        CHECK_RET(cit_buf_add(&l->f, "", 1) == 0, "out of memory");
        rd->why = l->f.p + at;
    }
    return a;
}

/* Ends the connection and waits (60 s at most) for the participant: its
 * exit status, or -1. */
static int liar_close(struct liar *l)
{
    int st = -1;
    if (l->c.fd >= 0 || l->c.ssl) fl_net_close(&l->c);
    if (l->lfd >= 0) close(l->lfd);
    gw_tls_free(l->ctx);
    fl_roster_free(l->roster);
    free(l->w);
    cit_buf_free(&l->f);
    l->ctx = NULL;
    l->roster = NULL;
    l->w = NULL;
    l->lfd = -1;
    for (int i = 0; l->pid > 0 && i < 6000; i++) {
        struct timespec ts = {0, 10000000};
        pid_t r = waitpid(l->pid, &st, WNOHANG);
        if (r == l->pid) {
            l->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        nanosleep(&ts, NULL);
    }
    if (l->pid > 0) {
        kill(l->pid, SIGKILL);
        waitpid(l->pid, &st, 0);
    }
    return -1;
}

/* The participant's stderr (or stdout) holds want; its ledger a refusal. */
static int liar_said(const char *dir, const char *file, const char *want)
{
    char p[600], *txt;
    size_t len;
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    txt = t_read_file(p, &len);
    CHECK_RET(txt && strstr(txt, want), "%s: wanted '%s', got '%s'", file, want, txt ? txt : "");
    cit_free(txt);
    return 0;
}

static int liar_refused(struct liar *l, const char *why)
{
    char want[600], p[600], *log;
    size_t len;
    int st = liar_close(l);
    CHECK_RET(st == 1, "the participant exited with %d, not 1", st);
    snprintf(want, sizeof(want), "citadel fl join: %s", why);
    if (liar_said(l->dir, "j0.err", want)) return -1;
    snprintf(p, sizeof(p), "%s/l0/log", l->dir);
    log = t_read_file(p, &len);
    CHECK_RET(log && strstr(log, "\"action\":\"refuse\""), "no refusal in the ledger");
    cit_free(log);
    return 0;
}

/* A downgrade to plain mode is refused before the participant trains: a
 * READY that declines, naming both modes, no update computed, and the
 * participant gone. --min-mode plain takes that round; Paillier and
 * SecAgg+ rank alike, so a --min-mode paillier node takes a SecAgg+ round
 * and a default node is held back from a Paillier one only by its lack of
 * a key share. */
void test_fl_net_min_mode(void)
{
    struct liar l;
    struct fl_ready rd;
    char dir[512], p[600];
    snprintf(dir, sizeof(dir), "%s/fedmm", t_tmpdir());
    if (setup(dir, 3)) return;
    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_PLAIN)) goto fail;
    CHECKF(liar_ready(&l, 1, 0, &rd) == 0 &&
               strstr(rd.why, "the coordinator announced mode plain, weaker than this node's "
                              "minimum mode secagg") &&
               strstr(rd.why, "--min-mode plain allows it"),
           "%s", rd.why ? rd.why : "");
    if (liar_refused(&l, "round 1: the coordinator announced mode plain, weaker than this node's "
                         "minimum mode secagg"))
        return;
    snprintf(p, sizeof(p), "%s/up0", dir);
    CHECKF(access(p, F_OK) != 0, "the participant computed an update for a plain round");

    if (liar_open(&l, dir, "--min-mode plain") || liar_task(&l, 1, 3, FL_MODE_PLAIN)) goto fail;
    CHECK(liar_ready(&l, 1, ((size_t)l.t.d + 1) * 4, &rd) == 1);
    liar_close(&l);
    CHECK(access(p, F_OK) == 0);

    if (liar_open(&l, dir, "--min-mode paillier") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    liar_close(&l);

    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_PAILLIER)) goto fail;
    CHECKF(liar_ready(&l, 1, 0, &rd) == 0 && strstr(rd.why, "holds no Paillier key share"), "%s",
           rd.why ? rd.why : "");
    liar_close(&l);
    return;
fail:
    liar_close(&l);
}

/* Round numbers go forward only: the same round twice (the protocol never
 * resends one) and a smaller one are refused; an SA_SETUP that names
 * another round than its TASK aborts that round. */
void test_fl_net_round_order(void)
{
    struct liar l;
    struct fl_ready rd;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fedro", t_tmpdir());
    if (setup(dir, 3)) return;
    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    if (liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECKF(liar_ready(&l, 1, 0, &rd) == 0 && strstr(rd.why, "a second TASK for round 1"), "%s",
           rd.why ? rd.why : "");
    if (liar_refused(&l, "round 1: a second TASK for round 1 (the coordinator never resends a "
                         "round: a replay)"))
        return;

    if (liar_open(&l, dir, "") || liar_task(&l, 2, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 2, 0, &rd) == 1);
    if (liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECKF(liar_ready(&l, 1, 0, &rd) == 0 && strstr(rd.why, "round 1 after round 2"), "%s",
           rd.why ? rd.why : "");
    if (liar_refused(&l, "round 1: a TASK for round 1 after round 2 (rounds only go forward)"))
        return;

    /* the secure aggregation of round 1 set up as round 2 */
    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    {
        struct fl_sa_params sp = {0};
        struct fl_sa_server *srv = NULL;
        struct cit_err err = {0};
        uint32_t members[3] = {0, 1, 2};
        int ok;
        randombytes_buf(sp.session, 32);
        sp.round = 2;
        sp.n = 3;
        sp.k = 2;
        sp.t = 2;
        sp.d = l.t.d + 1;
        sp.members = members;
        CHECKF(fl_sa_server_new(&sp, l.roster, &srv, &err) == 0, "%s", err.msg);
        ok = !fl_sa_server_send(srv, 0, &l.f) && l.f.len &&
             !fl_net_send(&l.c, l.f.p, l.f.len, &err) && !fl_net_recv(&l.c, &l.f, &err);
        fl_sa_server_free(srv);
        CHECKF(ok, "%s", err.msg);
        cit_buf_add(&l.f, "", 1);
        CHECKF(l.f.p[4] == FL_MSG_ABORT &&
                   strstr(l.f.p + FL_HDR, "SA_SETUP: round 2, but the TASK was for round 1"),
               "%s", l.f.p + FL_HDR);
    }
    CHECK(liar_close(&l) == 1); /* it waited for the next round: the coordinator went */
    CHECK(liar_said(dir, "l0/log", "SA_SETUP: round 2, but the TASK was for round 1") == 0);
    return;
fail:
    liar_close(&l);
}

/* A round may skip ahead (this node was not selected for the rounds
 * between) but not past the rounds the first TASK announced, nor change
 * that total; and there is no round 0. */
void test_fl_net_round_jump(void)
{
    struct liar l;
    struct fl_ready rd;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fedrj", t_tmpdir());
    if (setup(dir, 3)) return;
    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    if (liar_task(&l, 5, 3, FL_MODE_SECAGG)) goto fail;
    CHECKF(liar_ready(&l, 5, 0, &rd) == 0 && strstr(rd.why, "round 5 of the 3 rounds announced"),
           "%s", rd.why ? rd.why : "");
    if (liar_refused(&l, "round 5: a TASK for round 5 of the 3 rounds announced (a jump past "
                         "the end)"))
        return;

    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    if (liar_task(&l, 2, 10, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 2, 0, &rd) == 0);
    if (liar_refused(&l, "round 2: the TASK announces 10 rounds, the first announced 3")) return;

    if (liar_open(&l, dir, "") || liar_task(&l, 1, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 1, 0, &rd) == 1);
    if (liar_task(&l, 3, 3, FL_MODE_SECAGG)) goto fail; /* round 2 went to others */
    CHECK(liar_ready(&l, 3, 0, &rd) == 1);
    if (liar_task(&l, 0, 3, FL_MODE_SECAGG)) goto fail;
    CHECK(liar_ready(&l, 0, 0, &rd) == 0);
    if (liar_refused(&l, "round 0: a TASK for round 0 (rounds count from 1)")) return;
    return;
fail:
    liar_close(&l);
}

/* The final model of a plain round of one participant: the coordinator
 * knows the sum (the participant's own contribution) and computes the
 * model as an honest one would; a FINISH one float step off in one
 * parameter is refused and nothing is written, the exact one is taken. */
static int finish_run(const char *dir, int lie, float **model)
{
    struct liar l;
    struct fl_ready rd;
    struct fl_finish fin = {0};
    struct fl_server_opt so;
    struct cit_err err = {0};
    uint32_t *sum = NULL;
    size_t d1;
    int rc = -1;
    *model = NULL;
    if (liar_open(&l, dir, "--min-mode plain") || liar_task(&l, 1, 1, FL_MODE_PLAIN)) goto out;
    d1 = (size_t)l.t.d + 1;
    if (liar_ready(&l, 1, d1 * 4, &rd) != 1) goto out;
    sum = malloc(d1 * 4);
    *model = malloc(l.t.d * sizeof(float));
    if (!sum || !*model) goto out;
    for (size_t i = 0; i < d1; i++)
        sum[i] = (uint32_t)rd.body[4 * i] | (uint32_t)rd.body[4 * i + 1] << 8 |
                 (uint32_t)rd.body[4 * i + 2] << 16 | (uint32_t)rd.body[4 * i + 3] << 24;
    memcpy(*model, l.w, l.t.d * sizeof(float));
    if (fl_server_opt_init(&so, FL_FEDAVG, l.t.d) ||
        fl_server_update(&l.t.rc, &so, *model, sum, l.t.d, &err)) {
        t_fail(__FILE__, __LINE__, "the test's own step: %s", err.msg);
        goto out;
    }
    fl_server_opt_free(&so);
    fin.rounds = 1;
    fin.d = l.t.d;
    fin.w = malloc(l.t.d * sizeof(float));
    if (!fin.w) goto out;
    memcpy(fin.w, *model, l.t.d * sizeof(float));
    if (lie) fin.w[lie] = nextafterf(fin.w[lie], INFINITY);
    fin.round = 1;
    fin.strategy = FL_FEDAVG;
    fin.sum = sum;
    if (fl_finish_write(&fin, &l.f) || fl_net_send(&l.c, l.f.p, l.f.len, &err)) {
        t_fail(__FILE__, __LINE__, "FINISH: %s", err.msg);
        goto out;
    }
    rc = 0;
out:
    free(fin.w);
    free(sum);
    if (rc) {
        liar_close(&l);
        return rc;
    }
    if (lie) {
        char want[200];
        snprintf(want, sizeof(want),
                 "FINISH refused, no model written: the final model is not round 1's model plus "
                 "the mean of its sum: parameter %d is",
                 lie);
        return liar_refused(&l, want);
    }
    rc = liar_close(&l);
    CHECK_RET(rc == 0, "the participant exited with %d on an honest FINISH", rc);
    return 0;
}

void test_fl_net_finish(void)
{
    char dir[512], p[600];
    float *want = NULL, *got = NULL;
    size_t d = 0;
    struct cit_err err = {0};
    snprintf(dir, sizeof(dir), "%s/fedfin", t_tmpdir());
    if (setup(dir, 3)) return;
    snprintf(p, sizeof(p), "%s/model.0", dir);
    if (finish_run(dir, 7, &want)) goto out;
    CHECKF(access(p, F_OK) != 0, "a refused final model was written");
    free(want);
    want = NULL;
    if (finish_run(dir, 0, &want)) goto out;
    CHECK(liar_said(dir, "j0.out",
                    "final model checked: round 1's model plus the mean of its "
                    "sum\n") == 0);
    CHECKF(fl_model_read(p, &got, &d, &err) == 0, "%s", err.msg);
    CHECK(want && !memcmp(got, want, d * sizeof(float)));
out:
    free(want);
    cit_free(got);
}

/* fl_finish_check in process, on what the network tests cannot make an
 * honest or a lying coordinator show: a sum that is not the one SA_DONE
 * announced, rounds that failed after the last TASK, a FINISH of another
 * size or count of rounds, a FedAdam step, a round this node never saw. */
void test_fl_finish_check(void)
{
    enum { D = 3 };
    float w0[D] = {0.25f, -1.0f, 3.0f}, w1[D];
    uint32_t sum[D + 1], other[D + 1];
    struct fl_seen s = {0};
    struct fl_finish f = {0};
    struct fl_server_opt so;
    struct cit_err err = {0};
    char why[256];
    s.task.round = 2;
    s.task.rounds = 3;
    s.task.d = D;
    s.task.w = w0;
    s.task.rc.clip = 10;
    s.task.rc.max_clients = 4;
    s.task.rc.local_epochs = 1;
    {
        /* two contributors' worth, fixed point at the round's scale */
        double scale = fl_quant_scale(10, 4);
        const double mean[D] = {0.5, 0.125, -2.0};
        for (int i = 0; i < D; i++) sum[i] = (uint32_t)(int32_t)lrint(2 * mean[i] * scale);
        sum[D] = (uint32_t)(int32_t)lrint(2 * scale);
    }
    memcpy(w1, w0, sizeof(w1));
    CHECK(fl_server_opt_init(&so, FL_FEDAVG, D) == 0);
    CHECK(fl_server_update(&s.task.rc, &so, w1, sum, D, &err) == 0);
    fl_server_opt_free(&so);
    CHECK(fabsf(w1[0] - 0.75f) < 1e-6f && fabsf(w1[2] - 1.0f) < 1e-6f);
    f.rounds = 3;
    f.d = D;
    f.w = w1;
    f.round = 2;
    f.strategy = FL_FEDPROX;
    f.sum = sum;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_RECOMPUTED);
    /* the SA_DONE digest: the sum FINISH carries must be the announced one */
    s.sum_round = 2;
    fl_sha256(s.sum_digest, sum, sizeof(sum), NULL, 0, NULL, 0);
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_RECOMPUTED);
    memcpy(other, sum, sizeof(sum));
    other[1] += 1000000; /* 0.009 in the mean: past a float step of the model */
    fl_sha256(s.sum_digest, other, sizeof(other), NULL, 0, NULL, 0);
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "round 2's sum (SHA-256 ") &&
               strstr(err.msg, "is not the one its SA_DONE announced"),
           "%s", err.msg);
    f.strategy = FL_FEDADAM; /* checked before the step, whatever the step */
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    fl_sha256(s.sum_digest, sum, sizeof(sum), NULL, 0, NULL, 0);
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_UNCHECKED);
    CHECKF(strstr(why, "FedAdam"), "%s", why);
    f.strategy = FL_FEDAVG;
    /* a model one float step away, and the model of a sum another than the one carried */
    {
        float keep = w1[1];
        w1[1] = nextafterf(keep, 0);
        CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
        CHECKF(strstr(err.msg, "not round 2's model plus the mean of its sum: parameter 1 is"),
               "%s", err.msg);
        w1[1] = keep;
    }
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_RECOMPUTED);
    s.sum_round = 0;
    f.sum = other;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    f.sum = sum;
    /* a sum with no weight in it cannot have made a model */
    {
        uint32_t zero[D + 1] = {0};
        f.sum = zero;
        CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
        CHECKF(strstr(err.msg, "round 2's sum cannot have been aggregated"), "%s", err.msg);
        f.sum = sum;
    }
    /* another count of rounds, another size */
    f.rounds = 4;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "it counts 4 rounds, the TASKs announced 3"), "%s", err.msg);
    f.rounds = 3;
    f.d = D - 1;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "a model of 2 parameters, the rounds' model has 3"), "%s", err.msg);
    f.d = D;
    /* rounds 2 and later failed: the model must be round 2's TASK model itself */
    f.round = 1;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "no round after round 1 was aggregated, so the final model must be "
                           "round 2's, but parameter 0 is"),
           "%s", err.msg);
    f.w = w0;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_UNCHANGED);
    s.sum_round = 1; /* it took part in round 1: the sum FINISH names must still be that one */
    fl_sha256(s.sum_digest, other, sizeof(other), NULL, 0, NULL, 0);
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == CIT_ERANGE);
    CHECKF(strstr(err.msg, "round 1's sum (SHA-256 "), "%s", err.msg);
    s.sum_round = 0;
    f.round = 0; /* none aggregated at all */
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_UNCHANGED);
    /* a last round this node was not sent, and no TASK at all: nothing to check against */
    f.round = 3;
    f.w = w1;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_UNCHECKED);
    CHECKF(strstr(why, "not sent round 3's TASK"), "%s", why);
    s.task.round = 0;
    CHECK(fl_finish_check(&s, &f, why, sizeof(why), &err) == FL_FINISH_UNCHECKED);
    CHECKF(strstr(why, "sent no TASK"), "%s", why);
}

/* The accountant against the exact (analytic) Gaussian mechanism of Balle
 * and Wang 2018, which no valid bound can beat, and its composition. */
static double phi(double x)
{
    return 0.5 * erfc(-x / sqrt(2));
}

static double analytic_epsilon(double z, double delta)
{
    double lo = 0, hi = 100;
    for (int i = 0; i < 200; i++) {
        double e = (lo + hi) / 2;
        double dd = phi(1 / (2 * z) - e * z) - exp(e) * phi(-1 / (2 * z) - e * z);
        if (dd > delta)
            lo = e;
        else
            hi = e;
    }
    return hi;
}

void test_fl_dp(void)
{
    struct fl_dp_account a = {0}, b = {0};
    struct cit_err err = {0};
    char path[600];
    double sum = 0, sq = 0;
    enum { N = 400000 };
    float *x = calloc(N, sizeof(float));
    CHECK(fl_dp_epsilon(&a, 1e-5) == 0);
    for (double z = 0.8; z < 8; z *= 1.7) {
        double e, exact = analytic_epsilon(z, 1e-5);
        memset(&a, 0, sizeof(a));
        fl_dp_spend(&a, z);
        e = fl_dp_epsilon(&a, 1e-5);
        CHECKF(e >= exact && e < 1.35 * exact, "z %g: RDP epsilon %g, exact %g", z, e, exact);
    }
    /* Gaussian rounds compose exactly in RDP: 4 rounds at z = 2 cost what one at z = 1 does */
    memset(&a, 0, sizeof(a));
    for (int r = 0; r < 4; r++) fl_dp_spend(&a, 2);
    fl_dp_spend(&b, 1);
    CHECK(fabs(fl_dp_epsilon(&a, 1e-6) - fl_dp_epsilon(&b, 1e-6)) < 1e-9);
    CHECK(fl_dp_epsilon(&a, 1e-6) > fl_dp_epsilon(&a, 1e-3));
    /* the account on disk */
    snprintf(path, sizeof(path), "%s/dp-account", t_tmpdir());
    CHECK(fl_dp_save(path, &a, &err) == 0);
    memset(&b, 0, sizeof(b));
    CHECK(fl_dp_load(path, &b, &err) == 0);
    CHECK(b.rounds == 4 && !memcmp(a.rdp, b.rdp, sizeof(a.rdp)));
    CHECK(t_write_file(path, "citadel-fl-dp v1 rounds 4\n1.25 0.5\n", 36) == 0);
    CHECK(fl_dp_load(path, &b, &err) == CIT_EFORMAT && strstr(err.msg, "budget is unknown"));
    snprintf(path, sizeof(path), "%s/dp-none", t_tmpdir());
    CHECK(fl_dp_load(path, &b, &err) == 0 && b.rounds == 0);
    /* the noise: mean 0, variance sigma^2 */
    CHECK(x);
    fl_dp_noise(x, N, 3.0);
    for (int i = 0; i < N; i++) sum += x[i], sq += (double)x[i] * x[i];
    CHECKF(fabs(sum / N) < 0.03 && fabs(sq / N / 9 - 1) < 0.02, "mean %g, var %g", sum / N, sq / N);
    free(x);
}

/* Each participant keeps its own privacy budget across rounds and runs,
 * and refuses rounds that would overspend it or carry too little noise. */
void test_fl_net_dp(void)
{
    char dir[512], p[600], *out = NULL, *log;
    size_t len;
    const char *extra[3] = {"--dp-epsilon 3.5 --dp-state dp0", NULL, NULL};
    const char *extra2[3] = {"--dp-epsilon 3.5 --dp-state dp0", "--dp-min-noise 3", NULL};
    struct fl_dp_account a;
    struct cit_err err = {0};
    snprintf(dir, sizeof(dir), "%s/feddp", t_tmpdir());
    if (setup(dir, 3)) return;
    /* z = 2 at delta 1e-5: 2.17 after one round, 3.19 after two, 4.01 after three */
    CHECKF(federate(dir, 3, "--rounds 3 --dp-noise 2 --clip 5", extra, &out) == 0, "%s", out);
    CHECKF(strstr(out, "round 2: 3 selected, 3 ready") &&
               strstr(out, "round 3: 3 selected, 2 ready, 2 contributors"),
           "%s", out);
    cit_free(out);
    snprintf(p, sizeof(p), "%s/dp0", dir);
    CHECK(fl_dp_load(p, &a, &err) == 0 && a.rounds == 2);
    CHECK(fabs(fl_dp_epsilon(&a, 1e-5) - 3.19) < 0.01);
    snprintf(p, sizeof(p), "%s/l0/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "\"action\":\"decline\"") && strstr(log, "privacy budget spent") &&
          strstr(log, "epsilon_total=3.19"));
    cit_free(log);
    /* the next federation: node0's budget is still spent, node1 wants more noise */
    CHECK(federate(dir, 3, "--rounds 1 --dp-noise 2 --clip 5", extra2, &out) == 0);
    CHECKF(!strstr(out, "round 1:"), "%s", out);
    cit_free(out);
    snprintf(p, sizeof(p), "%s/l1/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "below this node's floor of 3"));
    cit_free(log);
    snprintf(p, sizeof(p), "%s/lc/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "only 1 participants ready") && strstr(log, "dp_z=2"));
    cit_free(log);
}

/* Paillier: round trips, homomorphic sums with packing, threshold decryption
 * by any t parties, and refusal of too few or wrong shares. */
void test_fl_paillier(void)
{
    enum { PARTIES = 5, T = 3, CLIENTS = 4, D = 61 };
    struct fl_pai *k = NULL;
    struct fl_pai_share *sh[PARTIES] = {0};
    struct cit_err err = {0};
    uint32_t v[CLIENTS][D], want[D] = {0}, got[D];
    uint64_t seed = 42;
    uint8_t *acc, *ct, *ds[PARTIES];
    size_t m, cb;
    int slots, sb, ids[PARTIES];
    CHECKF(fl_pai_keygen(512, PARTIES, T, &k, sh, &err) == 0, "%s", err.msg);
    CHECK(fl_pai_bits(k) == 512);
    fl_pai_layout(k, CLIENTS, &slots, &sb);
    CHECK(sb == 34 && slots == 510 / 34);
    m = fl_pai_cts(k, CLIENTS, D);
    cb = fl_pai_ct_bytes(k);
    CHECK(m == (D + (size_t)slots - 1) / (size_t)slots && cb == 128);
    acc = calloc(m, cb);
    ct = calloc(m, cb);
    for (int c = 0; c < CLIENTS; c++)
        for (int j = 0; j < D; j++) {
            /* extremes included: every bit of a u32, and 0 */
            v[c][j] = j == 0 ? 0xffffffffu : j == 1 ? 0 : (uint32_t)t_rand(&seed);
            want[j] += v[c][j];
        }
    /* one client alone: a round trip */
    CHECK(fl_pai_encrypt(k, CLIENTS, v[0], D, acc) == 0);
    {
        uint8_t *again = calloc(m, cb);
        CHECK(fl_pai_encrypt(k, CLIENTS, v[0], D, again) == 0);
        CHECK(memcmp(again, acc, m * cb) != 0); /* randomised */
        free(again);
    }
    for (int i = 0; i < T; i++) {
        ds[i] = calloc(m, cb);
        ids[i] = fl_pai_share_id(sh[i]);
        CHECK(fl_pai_decrypt_share(k, sh[i], acc, m, ds[i]) == 0);
    }
    CHECKF(fl_pai_combine(k, CLIENTS, ids, (const uint8_t *const *)ds, T, D, got, &err) == 0, "%s",
           err.msg);
    CHECK(!memcmp(got, v[0], sizeof(got)));
    for (int i = 0; i < T; i++) free(ds[i]);
    /* every client: the sum, mod 2^32 per slot */
    for (int c = 1; c < CLIENTS; c++) {
        CHECK(fl_pai_encrypt(k, CLIENTS, v[c], D, ct) == 0);
        CHECK(fl_pai_add(k, acc, ct, m) == 0);
    }
    for (int i = 0; i < PARTIES; i++) {
        ds[i] = calloc(m, cb);
        ids[i] = fl_pai_share_id(sh[i]);
        CHECK(fl_pai_decrypt_share(k, sh[i], acc, m, ds[i]) == 0);
    }
    /* any T of the parties decrypt: {0,1,2} and {4,2,3} */
    CHECK(fl_pai_combine(k, CLIENTS, ids, (const uint8_t *const *)ds, T, D, got, &err) == 0);
    CHECK(!memcmp(got, want, sizeof(got)));
    {
        int ids2[T] = {ids[4], ids[2], ids[3]};
        const uint8_t *ds2[T] = {ds[4], ds[2], ds[3]};
        memset(got, 0, sizeof(got));
        CHECKF(fl_pai_combine(k, CLIENTS, ids2, ds2, T, D, got, &err) == 0, "%s", err.msg);
        CHECK(!memcmp(got, want, sizeof(got)));
        /* too few, a repeated party, a share under the wrong name */
        CHECK(fl_pai_combine(k, CLIENTS, ids2, ds2, T - 1, D, got, &err) == CIT_EINVAL);
        ids2[1] = ids2[0];
        CHECK(fl_pai_combine(k, CLIENTS, ids2, ds2, T, D, got, &err) == CIT_EINVAL);
        ids2[1] = ids[1];
        CHECK(fl_pai_combine(k, CLIENTS, ids2, ds2, T, D, got, &err) == CIT_EFORMAT);
        CHECK(strstr(err.msg, "do not combine"));
    }
    /* a number that is not a ciphertext (>= N^2) */
    memset(ct, 0xff, cb);
    CHECK(fl_pai_add(k, acc, ct, 1) == CIT_EFORMAT);
    for (int i = 0; i < PARTIES; i++) {
        free(ds[i]);
        fl_pai_share_free(sh[i]);
    }
    free(acc);
    free(ct);
    fl_pai_free(k);
}

/* Paillier as a mode of the federation: a dealt key, every participant
 * decrypting its share of the product of the signed contributions; one
 * decryptor vanishing still leaves t; two leave too few. */
void test_fl_net_paillier(void)
{
    enum { N = 3 };
    char dir[512], p[600], ex[N][64], *out = NULL, *log;
    const char *extra[N];
    struct fl_pai *k = NULL;
    struct fl_pai_share *sh[N] = {0};
    struct cit_err err = {0};
    int all[N] = {1, 1, 1};
    size_t len;
    snprintf(dir, sizeof(dir), "%s/fedpa", t_tmpdir());
    if (setup(dir, N)) return;
    CHECKF(fl_pai_keygen(512, N, 2, &k, sh, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof(p), "%s/paillier.pub", dir);
    CHECK(fl_pai_save(k, NULL, p, &err) == 0);
    for (int i = 0; i < N; i++) {
        snprintf(p, sizeof(p), "%s/node%d.paillier", dir, i);
        CHECK(fl_pai_save(k, sh[i], p, &err) == 0);
        fl_pai_share_free(sh[i]);
        snprintf(ex[i], sizeof(ex[i]), "--paillier node%d.paillier", i);
        extra[i] = ex[i];
    }
    fl_pai_free(k);
    /* the files read back as what was written */
    {
        struct fl_pai *k2;
        struct fl_pai_share *s2;
        snprintf(p, sizeof(p), "%s/node1.paillier", dir);
        CHECK(fl_pai_load(p, &k2, &s2, &err) == 0 && fl_pai_share_id(s2) == 2 &&
              fl_pai_threshold(k2) == 2 && fl_pai_bits(k2) == 512);
        fl_pai_share_free(s2);
        fl_pai_free(k2);
        snprintf(p, sizeof(p), "%s/paillier.pub", dir);
        CHECK(fl_pai_load(p, &k2, &s2, &err) == CIT_EFORMAT); /* no share in it */
        snprintf(p, sizeof(p), "%s/c0.y.idx", dir);
        CHECK(fl_pai_load(p, &k2, NULL, &err) == CIT_EFORMAT);
    }
    CHECKF(federate(dir, N, "--rounds 2 --paillier paillier.pub", extra, &out) == 0, "%s", out);
    CHECKF(strstr(out, "round 2: 3 selected, 3 ready, 3 contributors"), "%s", out);
    cit_free(out);
    if (check_sum(dir, N, all)) return;
    /* Paillier passes the default minimum mode, and its final model is checked too */
    snprintf(p, sizeof(p), "%s/j0.out", dir);
    log = t_read_file(p, &len);
    CHECKF(log && strstr(log, "final model checked: round 2's model plus the mean of its sum\n"),
           "%s", log ? log : "");
    cit_free(log);
    snprintf(p, sizeof(p), "%s/l2/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "\"action\":\"decrypt\"") && strstr(log, "contributors=3"));
    cit_free(log);
    /* one decryptor vanishes: the other two suffice, all three contributions count */
    snprintf(ex[1], sizeof(ex[1]), "--paillier node1.paillier --drop-at decrypt");
    CHECK(federate(dir, N, "--rounds 1 --paillier paillier.pub", extra, &out) == 0);
    CHECKF(strstr(out, "round 1: 3 selected, 3 ready, 3 contributors"), "%s", out);
    cit_free(out);
    if (check_sum(dir, N, all)) return;
    /* two vanish: one share of the two needed, no sum */
    snprintf(ex[2], sizeof(ex[2]), "--paillier node2.paillier --drop-at decrypt");
    CHECK(federate(dir, N, "--rounds 1 --paillier paillier.pub", extra, &out) == 0);
    CHECKF(!strstr(out, "round 1:"), "%s", out);
    cit_free(out);
    snprintf(p, sizeof(p), "%s/lc/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "only 1 of the 2 decryption shares"));
    cit_free(log);
    /* a participant without a share declines a Paillier round */
    snprintf(ex[1], sizeof(ex[1]), " ");
    snprintf(ex[2], sizeof(ex[2]), "--paillier node2.paillier");
    CHECK(federate(dir, N, "--rounds 1 --paillier paillier.pub", extra, &out) == 0);
    CHECKF(strstr(out, "round 1: 3 selected, 2 ready"), "%s", out);
    cit_free(out);
    snprintf(p, sizeof(p), "%s/l1/log", dir);
    log = t_read_file(p, &len);
    CHECK(log && strstr(log, "holds no Paillier key share"));
    cit_free(log);
}

/* ---- the orchestration frames ---- */

#define FRAME (const uint8_t *)b.p, b.len

/* What fl serve and fl join write reads back as written, and each reader
 * tells a frame of another type (CIT_EFORMAT, saying what it is) from one
 * that does not answer the request (CIT_ERANGE). */
void test_fl_frames(void)
{
    struct cit_buf b = {0};
    struct cit_err err = {0};
    struct fl_ready rd;
    struct fl_decrypt_rd dr;
    const uint32_t v[3] = {1, 2, 0xdeadbeef}, members[2] = {2, 0};
    const float w[2] = {0.5f, -2.0f};
    uint8_t blk[2][64 + 40], shares[40];
    const uint8_t *signed_cts[2] = {blk[0], blk[1]}, *sig, *cts, *sh;
    uint32_t who;
    for (int i = 0; i < 2; i++) memset(blk[i], 0x30 + i, sizeof(blk[i]));
    memset(shares, 0x55, sizeof(shares));

    /* READY: declined, plain, secure, Paillier */
    CHECK(fl_ready_write(&b, 5, "too little noise", NULL, 0) == 0);
    CHECK(fl_ready_read(FRAME, 5, 12, &rd, &err) == 0 && !rd.accept);
    CHECK(rd.why_len == 16 && !memcmp(rd.why, "too little noise", 16));
    CHECK(fl_ready_read(FRAME, 6, 12, &rd, &err) == CIT_ERANGE);
    CHECK(fl_ready_write(&b, 5, NULL, v, 3) == 0);
    CHECK(fl_ready_read(FRAME, 5, 12, &rd, &err) == 1 && rd.accept);
    CHECK(rd.body == (const uint8_t *)b.p + FL_READY_BODY);
    CHECK(rd.body[8] == 0xef && rd.body[11] == 0xde); /* little-endian */
    CHECK(fl_ready_read(FRAME, 5, 8, &rd, &err) == CIT_ERANGE && !rd.body);
    CHECK(fl_ready_read(FRAME, 5, 16, &rd, &err) == CIT_ERANGE);
    CHECK(fl_ready_write(&b, 5, NULL, NULL, 0) == 0);
    CHECK(fl_ready_read(FRAME, 5, 0, &rd, &err) == 1);
    CHECK(fl_ready_write_pai(&b, 5, blk[0], blk[1] + 64, 40) == 0);
    CHECK(fl_ready_read(FRAME, 5, 104, &rd, &err) == 1);
    CHECK(!memcmp(rd.body, blk[0], 64) && !memcmp(rd.body + 64, blk[1] + 64, 40));
    CHECK(fl_abort_frame(&b, "no") == 0);
    CHECK(fl_ready_read(FRAME, 5, 0, &rd, &err) == CIT_EFORMAT);
    CHECKF(strstr(err.msg, "expected READY: ABORT"), "%s", err.msg);
    CHECK(fl_ready_read((const uint8_t *)b.p, 3, 5, 0, &rd, &err) == CIT_EFORMAT);
    CHECKF(strstr(err.msg, "expected READY: frame: 3 bytes"), "%s", err.msg);

    /* FINISH with the last round's sum, and one cut short: the out-parameter stays as it was */
    {
        uint32_t s3[3] = {7, 0xfffffffe, 2};
        struct fl_finish fo = {7, 2, (float *)w, 6, FL_FEDPROX, s3}, fi = {0};
        CHECK(fl_finish_write(&fo, &b) == 0 && b.len == FL_HDR + 8 + 8 + 9 + 12);
        CHECK(fl_finish_read((const uint8_t *)b.p, b.len - 1, &fi, &err) == CIT_EFORMAT &&
              !fi.rounds && !fi.w && !fi.sum);
        CHECK(fl_finish_read(FRAME, &fi, &err) == 0);
        CHECK(fi.rounds == 7 && fi.d == 2 && fi.w[0] == 0.5f && fi.w[1] == -2.0f);
        CHECK(fi.round == 6 && fi.strategy == FL_FEDPROX && !memcmp(fi.sum, s3, sizeof(s3)));
        fl_finish_free(&fi);
        CHECK(!fi.w && !fi.sum);
        /* no round aggregated: no sum */
        fo.round = 0;
        CHECK(fl_finish_write(&fo, &b) == 0 && b.len == FL_HDR + 8 + 8 + 9);
        CHECK(fl_finish_read(FRAME, &fi, &err) == 0 && fi.round == 0 && !fi.sum && fi.w);
        fl_finish_free(&fi);
        /* a round past the rounds, a strategy that is none, a weight that is no number */
        fo.round = 8;
        CHECK(fl_finish_write(&fo, &b) == 0);
        CHECK(fl_finish_read(FRAME, &fi, &err) == CIT_EFORMAT && !fi.w);
        CHECKF(strstr(err.msg, "FINISH: field 'round' is out of range"), "%s", err.msg);
        fo.round = 6;
        fo.strategy = 9;
        CHECK(fl_finish_write(&fo, &b) == 0);
        CHECK(fl_finish_read(FRAME, &fi, &err) == CIT_EFORMAT);
        CHECKF(strstr(err.msg, "'strategy'"), "%s", err.msg);
        fo.strategy = FL_FEDAVG;
        {
            float nan_w[2] = {0.5f, NAN};
            fo.w = nan_w;
            CHECK(fl_finish_write(&fo, &b) == 0);
            CHECK(fl_finish_read(FRAME, &fi, &err) == CIT_EFORMAT);
            CHECKF(strstr(err.msg, "'weights'"), "%s", err.msg);
        }
        fo.w = NULL;
        fo.d = 0;
        fo.round = 0;
        CHECK(fl_finish_write(&fo, &b) == 0);
        CHECK(fl_finish_read(FRAME, &fi, &err) == 0 && fi.rounds == 7 && !fi.d && !fi.w);
    }

    /* PA_DECRYPT */
    CHECK(fl_decrypt_write(&b, 9, 2, members, signed_cts, 40) == 0);
    CHECK(fl_decrypt_begin(&dr, FRAME, 9, 40, &err) == 0 && dr.count == 2);
    CHECK(fl_decrypt_next(&dr, &who, &sig, &cts) == 0 && who == 2);
    CHECK(!memcmp(sig, blk[0], 64) && !memcmp(cts, blk[0] + 64, 40));
    CHECK(fl_decrypt_end(&dr) == CIT_EFORMAT); /* one left */
    CHECK(fl_decrypt_begin(&dr, FRAME, 9, 40, &err) == 0);
    CHECK(fl_decrypt_next(&dr, &who, &sig, &cts) == 0 && who == 2);
    CHECK(fl_decrypt_next(&dr, &who, &sig, &cts) == 0 && who == 0 && sig[0] == 0x31);
    CHECK(fl_decrypt_end(&dr) == 0);
    CHECK(fl_decrypt_begin(&dr, FRAME, 8, 40, &err) == CIT_EFORMAT);
    CHECKF(strstr(err.msg, "PA_DECRYPT for another round"), "%s", err.msg);
    CHECK(fl_decrypt_begin(&dr, FRAME, 9, 41, &err) == CIT_EFORMAT);
    CHECKF(strstr(err.msg, "count 'contributions' at byte 20 is 2"), "%s", err.msg);

    /* PA_SHARE */
    CHECK(fl_share_write(&b, 9, 3, shares, 40) == 0);
    CHECK(fl_share_read(FRAME, 9, 3, 40, &sh, &err) == 0 && sh == (const uint8_t *)b.p + 24);
    CHECK(fl_share_read(FRAME, 8, 3, 40, &sh, &err) == CIT_ERANGE);
    CHECK(fl_share_read(FRAME, 9, 2, 40, &sh, &err) == CIT_ERANGE);
    CHECK(fl_share_read(FRAME, 9, 3, 39, &sh, &err) == CIT_ERANGE);
    CHECK(fl_ready_write(&b, 9, NULL, NULL, 0) == 0);
    CHECK(fl_share_read(FRAME, 9, 3, 40, &sh, &err) == CIT_EFORMAT);
    CHECKF(strstr(err.msg, "expected PA_SHARE: READY"), "%s", err.msg);
    cit_buf_free(&b);
}

/* ---- the roster file ---- */

/* Writes text to dir/roster and loads it. */
static int roster_try(const char *dir, const char *text, struct fl_roster **r, struct cit_err *err)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/roster", dir);
    if (t_write_file(p, text, strlen(text))) return CIT_EIO;
    return fl_roster_load(p, r, err);
}

/* Members in line order, comments, blank lines and CRLF endings skipped;
 * every refusal names the file, and the line where one is at fault; an
 * allocation that fails anywhere is reported and leaks nothing. */
void test_fl_roster(void)
{
    struct cit_err err = {0};
    struct ledger_skey k;
    struct fl_roster *r = NULL;
    struct cit_buf b = {0};
    char dir[600], p[700], vp[700], line[3][512], txt[2048];
    uint8_t pk[3][32];
    int rc = 0;
    snprintf(dir, sizeof(dir), "%s/fl-roster", t_tmpdir());
    mkdir(dir, 0755);
    for (int i = 0; i < 3; i++) {
        char name[16], *v;
        size_t len;
        snprintf(name, sizeof(name), "m%d", i);
        snprintf(p, sizeof(p), "%s/%s.key", dir, name);
        snprintf(vp, sizeof(vp), "%s/%s.vkey", dir, name);
        CHECKF(ledger_key_load(p, vp, name, &k, &err) == 0, "%s", err.msg);
        memcpy(pk[i], k.vk.pk, 32);
        CHECK((v = t_read_file(vp, &len)) != NULL);
        while (len && v[len - 1] == '\n') len--;
        CHECK(len < sizeof(line[i]));
        snprintf(line[i], sizeof(line[i]), "%.*s", (int)len, v);
        cit_free(v);
    }
    cit_buf_printf(&b, "# the consortium\n\n%s  \r\n%s\n#%s\n%s", line[2], line[0], line[1],
                   line[1]);
    rc = roster_try(dir, b.p, &r, &err);
    cit_buf_free(&b);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK(r->n == 3 && r->names && !strcmp(r->names[0], "m2") && !strcmp(r->names[1], "m0") &&
          !strcmp(r->names[2], "m1"));
    CHECK(!memcmp(r->pk[0], pk[2], 32) && !memcmp(r->pk[1], pk[0], 32) &&
          !memcmp(r->pk[2], pk[1], 32));
    fl_roster_free(r);
    r = NULL;

    snprintf(p, sizeof(p), "%s/none", dir);
    CHECK(fl_roster_load(p, &r, &err) == CIT_ENOENT && strstr(err.msg, p) && !r);
    snprintf(txt, sizeof(txt), "%s\n# note\n%s+0011+AAAA\n", line[0], "m9");
    CHECK(roster_try(dir, txt, &r, &err) == CIT_EFORMAT && !r);
    CHECKF(strstr(err.msg, "fl-roster/roster:3: verifier key"), "%s", err.msg);
    snprintf(txt, sizeof(txt), "%s\n%s\n%s\n", line[0], line[1], line[0]);
    CHECK(roster_try(dir, txt, &r, &err) == CIT_EFORMAT && !r);
    CHECKF(strstr(err.msg, "roster:3: the same key twice"), "%s", err.msg);
    snprintf(txt, sizeof(txt), "# one\n%s\n", line[1]);
    CHECK(roster_try(dir, txt, &r, &err) < 0 && !r);
    CHECKF(strstr(err.msg, "fl-roster/roster: a roster needs at least 2 members"), "%s", err.msg);

    snprintf(txt, sizeof(txt), "%s\n%s\n", line[0], line[1]);
    for (long nth = 1;; nth++) {
        cit_alloc_fail_at(nth);
        rc = roster_try(dir, txt, &r, &err);
        cit_alloc_fail_at(0);
        if (!rc) break;
        CHECKF(rc == CIT_ENOMEM && strstr(err.msg, "roster: out of memory") && !r,
               "allocation %ld: %d %s", nth, rc, err.msg);
        CHECK(nth < 100);
    }
    CHECK(r->n == 2 && !strcmp(r->names[1], "m1"));
    fl_roster_free(r);
}
