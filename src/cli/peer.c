/*
 * citadel peer identity|list|test: the node's links to its peers
 * (docs/gateway.md). While serve runs, list and test run in it (its admin
 * socket), so they show the live health checks and counters.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "citadel/gateway.h"
#include "citadel/ledger.h"
#include "citadel/node.h"
#include "citadel/policy.h"
#include "cli.h"

void cli_usage_peer(FILE *f)
{
    fputs("usage: citadel peer identity [--witness] [--config F | --policy P --ledger DIR --state "
          "F]\n"
          "         the node's identity line (its ledger key; made on first use), for the\n"
          "         peers' policies: peers: {ID: {identity: \"...\"}}; --witness: its witness\n"
          "         key's line, for peers that want it to cosign: {witness_key: \"...\"}\n"
          "       citadel peer keygen ...   the same\n"
          "       citadel peer list [--json] [...]   each peer's state, identity, last check\n"
          "       citadel peer test ID [...]          handshake, pin, test passport, latency\n"
          "       citadel peer witnessed ID [...]     the last checkpoint of ID's ledger this\n"
          "                                           node cosigned (for ID's auditors)\n"
          "       citadel peer cosigned ID [...]      the last checkpoint of this node's ledger\n"
          "                                           the witness ID cosigned\n",
          f);
}

static void show(const struct gw_peer_stats *st, const struct pol_target *t, int json)
{
    char when[32] = "never";
    if (st->last_check) cit_utc_seconds(st->last_check, when);
    if (json) {
        fprintf(cli_out, "{\"id\":");
        cli_json_str(cli_out, st->id, strlen(st->id));
        fprintf(cli_out, ",\"kind\":\"%s\",\"url\":", st->kind);
        cli_json_str(cli_out, st->url, strlen(st->url));
        fprintf(cli_out, ",\"jurisdiction\":\"%s\",\"identity\":", st->jurisdiction);
        cli_json_str(cli_out, t->identity, strlen(t->identity));
        fprintf(cli_out,
                ",\"healthy\":%s,\"breaker_open\":%s,\"last_check\":%lld,\"last_check_ms\":%.1f,"
                "\"last_error\":",
                st->healthy ? "true" : "false", st->breaker_open ? "true" : "false",
                (long long)st->last_check, st->last_check_ms);
        cli_json_str(cli_out, st->last_error, strlen(st->last_error));
        fprintf(cli_out,
                ",\"witness_size\":%llu,\"witness_error\":", (unsigned long long)st->witness_size);
        cli_json_str(cli_out, st->witness_error, strlen(st->witness_error));
        fprintf(cli_out, ",\"requests\":%llu,\"failures\":%llu,\"bytes_out\":%llu}\n",
                (unsigned long long)st->requests, (unsigned long long)st->failures,
                (unsigned long long)st->bytes_out);
        return;
    }
    fprintf(cli_out, "%-16s %-7s %-3s %-5s %s\n", st->id, st->kind, st->jurisdiction,
            st->breaker_open ? "open"
            : st->healthy    ? "up"
                             : "down",
            st->url);
    fprintf(cli_out, "    identity  %s\n", t->identity[0] ? t->identity : "(TLS: system or 'ca')");
    fprintf(cli_out, "    checked   %s (%.1f ms)%s%s\n", when, st->last_check_ms,
            st->last_error[0] ? ": " : "", st->last_error);
    if (t->witness_key[0])
        fprintf(cli_out, "    witness   cosigned %llu entries%s%s\n",
                (unsigned long long)st->witness_size, st->witness_error[0] ? "; last: " : "",
                st->witness_error);
    fprintf(cli_out, "    forwards  %llu, %llu failed, %llu bytes sent\n",
            (unsigned long long)st->requests, (unsigned long long)st->failures,
            (unsigned long long)st->bytes_out);
}

int cli_peer(int argc, char **argv)
{
    const char *verb = argc > 0 ? argv[0] : "";
    struct cli_node_args na = {0};
    struct cli_node n;
    struct cit_err err = {{0}};
    int json = 0, witness = 0, rc, status, np = 0;
    const char *pos[1] = {NULL};
    const struct cli_flag flags[] = {{"--json", CLI_BOOL, &json, NULL, 0, 0},
                                     {"--witness", CLI_BOOL, &witness, NULL, 0, 0},
                                     {NULL, 0, NULL, NULL, 0, 0}};
    if ((rc = cli_flags_parse("peer", flags, &na, argc - (argc > 0), argv + (argc > 0), pos, 1,
                              &np))) {
        cli_usage_peer(cli_err);
        return rc;
    }
    if (!strcmp(verb, "identity") || !strcmp(verb, "keygen")) {
        if (np) {
            cli_usage_peer(cli_err);
            return 2;
        }
        if (cli_node_open(&na, CLI_NODE_LEDGER, &n, &err)) {
            fprintf(cli_err, "citadel peer %s: %s\n", verb, err.msg);
            return 1;
        }
        if (witness) {
            struct cit_buf b = {0};
            ledger_vkey_format(&node_witness_key(n.node)->vk, &b);
            fprintf(cli_out, "%s\n", b.p ? b.p : "");
            cit_buf_free(&b);
        } else {
            fprintf(cli_out, "%s\n", ledger_vkey_text(n.lg));
        }
        cli_node_close(&n);
        return 0;
    }
    if (!strcmp(verb, "witnessed") || !strcmp(verb, "cosigned")) {
        struct cit_buf note = {0};
        int w = !strcmp(verb, "witnessed");
        if (np != 1) {
            cli_usage_peer(cli_err);
            return 2;
        }
        if (cli_forward(&na, "peer", argc, argv, NULL, 0, &status)) return status;
        if (cli_node_open(&na, CLI_NODE_LEDGER, &n, &err)) {
            fprintf(cli_err, "citadel peer %s: %s\n", verb, err.msg);
            return 1;
        }
        if (pol_peer_index(n.pol, pos[0]) < 0) {
            fprintf(cli_err, "citadel peer %s: '%s' is not under the policy's peers\n", verb,
                    pos[0]);
            rc = 1;
        } else if ((rc = w ? node_witnessed(n.node, pos[0], &note, &err)
                           : node_cosigned(n.node, pos[0], &note, &err))) {
            if (rc == CIT_ENOENT)
                fprintf(cli_err,
                        w ? "citadel peer witnessed: this node has cosigned none of %s's "
                            "checkpoints yet\n"
                          : "citadel peer cosigned: %s has cosigned none of this node's "
                            "checkpoints yet\n",
                        pos[0]);
            else
                fprintf(cli_err, "citadel peer %s: %s\n", verb, err.msg);
            rc = 1;
        } else {
            fwrite(note.p, 1, note.len, cli_out);
        }
        cit_buf_free(&note);
        cli_node_close(&n);
        return rc;
    }
    if (strcmp(verb, "list") && strcmp(verb, "test")) {
        cli_usage_peer(cli_err);
        return 2;
    }
    if (!strcmp(verb, "test") && !np) {
        fprintf(cli_err, "citadel peer test: name the peer (citadel peer list shows them)\n");
        return 2;
    }
    if (cli_forward(&na, "peer", argc, argv, NULL, 0, &status)) return status;
    if (cli_node_open(&na, CLI_NODE_GATEWAY, &n, &err)) {
        fprintf(cli_err, "citadel peer %s: %s\n", verb, err.msg);
        return 1;
    }
    struct gw *g = node_gateway(n.node);
    rc = 0;
    if (!strcmp(verb, "list")) {
        if (!n.pol->n_peers) fprintf(cli_out, "the policy names no peers\n");
        for (int i = 0; i < gw_peer_count(g); i++) {
            struct gw_peer_stats st;
            if (!n.borrowed) gw_check(g, i, 0, &err); /* offline: look now */
            gw_peer_stats(g, i, &st);
            show(&st, &n.pol->peers[i], json);
        }
    } else {
        int i = pol_peer_index(n.pol, pos[0]);
        double best = -1, sum = 0;
        int ok = 0;
        if (i < 0) {
            fprintf(cli_err, "citadel peer test: '%s' is not under the policy's peers\n", pos[0]);
            cli_node_close(&n);
            return 1;
        }
        /* the first check makes the connection (handshake and pin) and
         * sends a test passport; the rest reuse the connection */
        for (int k = 0; k < 5; k++) {
            struct gw_peer_stats st;
            if (gw_check(g, i, k == 0, &err)) {
                fprintf(cli_out, "%s: FAILED: %s\n", pos[0], err.msg);
                rc = 1;
                break;
            }
            gw_peer_stats(g, i, &st);
            if (k) {
                sum += st.last_check_ms;
                if (best < 0 || st.last_check_ms < best) best = st.last_check_ms;
            } else {
                fprintf(cli_out, "%s: handshake and pin ok (%s), first answer %.1f ms\n", pos[0],
                        n.pol->peers[i].kind == POL_PEER_CITADEL
                            ? "mutual TLS 1.3, its node key pinned"
                            : "TLS, its certificate checked",
                        st.last_check_ms);
                if (st.passport_ok == 1)
                    fprintf(cli_out,
                            "%s: passport round trip ok: it took a test passport and "
                            "answered with a receipt signed by its pinned key\n",
                            pos[0]);
            }
            ok++;
        }
        if (ok == 5)
            fprintf(cli_out, "%s: on the kept connection: best %.2f ms, mean %.2f ms over 4\n",
                    pos[0], best, sum / 4);
    }
    cli_node_close(&n);
    return rc;
}
