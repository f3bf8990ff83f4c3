/*
 * libFuzzer target for the ledger's parsers (make fuzz): arbitrary bytes as
 * a signed checkpoint (checked against a fixed key, so only notes that are
 * malformed or badly signed are expected), as a verifier key, and as a log
 * line, and as a cosigned note (a witness's key, as fixed). Each either
 * parses or is refused; a checkpoint or cosignature that passes must have
 * been signed by the key, which the fuzzer cannot forge.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ledger/ledger_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ledger_vkey vk, wk;
    static int have;
    struct ledger_vkey other;
    struct ledger_checkpoint cp;
    struct cit_err err;
    size_t used;
    uint8_t prev[LEDGER_HASH] = {0};
    int64_t t;
    char why[200];
    if (!have) { /* a fresh key each run: its secret half is never used */
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        crypto_sign_keypair(vk.pk, sk);
        snprintf(vk.name, sizeof(vk.name), "fuzz.example/log");
        memcpy(vk.id, "\x01\x02\x03\x04", 4);
        wk = vk;
        wk.type = LEDGER_KEY_COSIGN;
        snprintf(wk.name, sizeof(wk.name), "fuzz.example/w1");
        have = 1;
    }
    if (ledger_checkpoint_open((const char *)data, size, &vk, &cp, &used, &err) == 0)
        abort(); /* a valid signature by a key whose secret half the fuzzer lacks */
    if (ledger_vkey_parse((const char *)data, size, &other, &err) == 0 && !other.name[0]) abort();
    if (ledger_cosignature_check((const char *)data, size, &wk, NULL, &err) == 0) abort();
    if (ledger_entry_check((const char *)data, size, 0, prev, &t, why, sizeof(why)) == 0 &&
        (size < 80 || memcmp(data, "{\"seq\":0,", 9)))
        abort();
    return 0;
}
