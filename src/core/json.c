/*
 * JSON string escaping into a cit_buf, shared by the HTTP API, the CLI's
 * JSON output and the ledger's export.
 */
#include <stdio.h>
#include <string.h>

#include "citadel/core.h"

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when invalid. */
static int cit_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    unsigned cp;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int cit_buf_json_str(struct cit_buf *o, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int rc = cit_buf_add(o, "\"", 1);
    size_t i = 0, run = 0; /* bytes [i - run, i) copy as they are */
    while (i < n && !rc) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char tmp[8];
        int l = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80 && !(l = cit_utf8_len(u + i, n - i))) {
            esc = "\xef\xbf\xbd"; /* U+FFFD for a byte that is not UTF-8 */
            l = 1;
        }
        if (esc) {
            rc = cit_buf_add(o, s + i - run, run);
            if (!rc) rc = cit_buf_add(o, esc, strlen(esc));
            run = 0;
            i += (size_t)l;
        } else {
            run += (size_t)l;
            i += (size_t)l;
        }
    }
    if (!rc) rc = cit_buf_add(o, s + i - run, run);
    if (!rc) rc = cit_buf_add(o, "\"", 1);
    return rc;
}
