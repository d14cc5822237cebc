/*
 * clientip.c - the client address used for rate limits and audit lines.
 *
 * TRUSTED_PROXY_COUNT = 0: the socket peer; X-Forwarded-For is ignored.
 * N >= 1: the N-th address from the right of X-Forwarded-For (all X-Forwarded-For headers
 * joined in order), i.e. the address the outermost trusted proxy saw. Entries further left are
 * client-controlled and ignored. If the header has fewer than N entries the leftmost one is the
 * best the proxies tell us; a malformed entry falls back to the socket peer.
 */
#include "intake.h"
#include "util.h"

#include <arpa/inet.h>
#include <string.h>

static int valid_ip(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* s into out, cut to fit as snprintf() would, without a format to interpret on every request */
static void copy_cut(char *out, size_t outlen, const char *s)
{
    if (!outlen)
        return;
    size_t n = strnlen(s, outlen - 1);
    memcpy(out, s, n);
    out[n] = '\0';
}

void client_ip_resolve(const struct http_request *req, int trusted_proxy_count, char *out,
                       size_t outlen)
{
    copy_cut(out, outlen, req->peer_ip);
    if (trusted_proxy_count <= 0)
        return;
    /* Join every X-Forwarded-For header in order. */
    struct buf all;
    buf_init(&all);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == 15 && !memcmp(h->name, "x-forwarded-for", 15)) {
            if (all.len)
                buf_puts(&all, ",");
            buf_append(&all, h->value, h->value_len);
        }
    }
    if (!all.len) {
        buf_destroy(&all);
        return;
    }
    /* Walk from the right. */
    int seen = 0;
    char *end = all.data + all.len;
    char chosen[64] = "";
    while (end > all.data && seen < trusted_proxy_count) {
        char *start = end;
        while (start > all.data && start[-1] != ',')
            start--;
        char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t n = (size_t)(b - a);
        if (n == 0 || n >= sizeof chosen) {
            chosen[0] = 0;
            break;
        }
        memcpy(chosen, a, n);
        chosen[n] = 0;
        seen++;
        end = start > all.data ? start - 1 : start;
    }
    if (chosen[0] && valid_ip(chosen))
        copy_cut(out, outlen, chosen);
    buf_destroy(&all);
}
