/*
 * seen.c - a bounded set of event ids recently written to the audit file, so that an event
 * replayed by a producer (it never got the acknowledgement) is not written twice. Open
 * addressing on the id's hex digits; a ring remembers insertion order for eviction.
 */
#include "auditd.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    char (*ring)[AUDIT_ID_LEN + 1];
    size_t cap, head, count;
    int32_t *slots; /* index into ring, -1 empty, -2 deleted */
    size_t nslots;
};

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < AUDIT_ID_LEN; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return h;
}

struct seen *seen_new(size_t capacity)
{
    struct seen *s = xcalloc(1, sizeof *s);
    s->cap = capacity ? capacity : 1;
    s->ring = xcalloc(s->cap, sizeof *s->ring);
    s->nslots = 4;
    while (s->nslots < 2 * s->cap)
        s->nslots *= 2;
    s->slots = xmalloc(s->nslots * sizeof *s->slots);
    for (size_t i = 0; i < s->nslots; i++)
        s->slots[i] = -1;
    return s;
}

static size_t find(const struct seen *s, const char *id, int *found)
{
    size_t m = s->nslots - 1, i = hash_id(id) & m, tomb = (size_t)-1;
    for (;;) {
        int32_t v = s->slots[i];
        if (v == -1) {
            *found = 0;
            return tomb != (size_t)-1 ? tomb : i;
        }
        if (v == -2) {
            if (tomb == (size_t)-1)
                tomb = i;
        } else if (!memcmp(s->ring[v], id, AUDIT_ID_LEN)) {
            *found = 1;
            return i;
        }
        i = (i + 1) & m;
    }
}

int seen_has(const struct seen *s, const char *id)
{
    int found;
    find(s, id, &found);
    return found;
}

static void rebuild(struct seen *s)
{
    for (size_t i = 0; i < s->nslots; i++)
        s->slots[i] = -1;
    for (size_t k = 0; k < s->count; k++) {
        size_t r = (s->head + s->cap - s->count + k) % s->cap;
        int found;
        size_t i = find(s, s->ring[r], &found);
        s->slots[i] = (int32_t)r;
    }
}

void seen_add(struct seen *s, const char *id)
{
    int found;
    size_t i = find(s, id, &found);
    if (found)
        return;
    if (s->count == s->cap) {
        /* Evict the oldest: the slot at head is about to be reused. */
        int f2;
        size_t j = find(s, s->ring[s->head], &f2);
        if (f2)
            s->slots[j] = -2;
        s->count--;
        i = find(s, id, &found);
    }
    memcpy(s->ring[s->head], id, AUDIT_ID_LEN);
    s->ring[s->head][AUDIT_ID_LEN] = 0;
    s->slots[i] = (int32_t)s->head;
    s->head = (s->head + 1) % s->cap;
    s->count++;
    /* Tombstones pile up under steady eviction: rebuild once in a while. */
    if (s->head == 0)
        rebuild(s);
}

size_t seen_count(const struct seen *s)
{
    return s->count;
}

size_t seen_load_file(struct seen *s, const char *path, size_t max_bytes)
{
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return 0;
    struct stat sb;
    size_t n = 0;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0) {
        close(fd);
        return 0;
    }
    size_t len = (size_t)sb.st_size < max_bytes ? (size_t)sb.st_size : max_bytes;
    char *d = xmalloc(len + 1);
    ssize_t got = pread(fd, d, len, sb.st_size - (off_t)len);
    close(fd);
    if (got > 0) {
        d[got] = 0;
        for (char *p = d; (p = strstr(p, "event_id")) != NULL;) {
            /* Only the line's own id, near its start, never one quoted inside its fields. */
            char *line = p;
            while (line > d && line[-1] != '\n' && p - line < 100)
                line--;
            int near_start = line == d || line[-1] == '\n';
            p += 8;
            if (!near_start)
                continue;
            if (!strncmp(p, "\":\"", 3))
                p += 3;
            else if (*p == '=')
                p += 1;
            else
                continue;
            if ((size_t)(d + got - p) >= AUDIT_ID_LEN && audit_id_valid(p, AUDIT_ID_LEN)) {
                seen_add(s, p);
                n++;
            }
        }
    }
    free(d);
    return n;
}

void seen_free(struct seen *s)
{
    if (!s)
        return;
    free(s->ring);
    free(s->slots);
    free(s);
}
