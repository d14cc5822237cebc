/*
 * job.c (proto) - encode/decode of JOB_READY (see job.h).
 */
#include "proto/job.h"
#include "proto/audit.h"
#include "proto/proto.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct fixed {
    unsigned char *p;
    size_t cap, len;
    int overflow;
};

static int fixed_write(void *data, const char *p, size_t n)
{
    struct fixed *f = data;
    if (f->overflow || n > f->cap - f->len) {
        f->overflow = 1;
        return -1;
    }
    memcpy(f->p + f->len, p, n);
    f->len += n;
    return 0;
}

int job_ready_encode_msg(const struct job_ready *j, void *out, size_t cap, size_t *len)
{
    int has_uuid = j->alert_uuid[0] != 0;
    int has_count = j->count > 1;
    if (j->job_id <= 0 || j->alert_id <= 0 || j->count < 0 || j->count > PROTO_MAX_ITEMS || !out)
        return -1;
    if (has_uuid && !audit_id_valid(j->alert_uuid, strlen(j->alert_uuid)))
        return -1;
    struct fixed f = {out, cap, 0, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, fixed_write);
    proto_pack_begin(&pk, PROTO_JOB_READY, 2 + has_uuid + has_count);
    proto_pack_i64(&pk, "job", j->job_id);
    proto_pack_i64(&pk, "alert", j->alert_id);
    if (has_uuid)
        proto_pack_str(&pk, "uuid", j->alert_uuid);
    if (has_count)
        proto_pack_i64(&pk, "count", j->count);
    if (f.overflow)
        return -1;
    *len = f.len;
    return 0;
}

int job_ready_encode(int64_t job_id, int64_t alert_id, void *out, size_t cap, size_t *len)
{
    struct job_ready j = {job_id, alert_id, "", 1};
    return job_ready_encode_msg(&j, out, cap, len);
}

int job_ready_decode(const void *data, size_t len, struct job_ready *j)
{
    memset(j, 0, sizeof *j);
    struct proto_msg m;
    if (proto_decode(data, len, PROTO_JOB_READY, &m) != 0)
        return -1;
    char *uuid = NULL;
    if (proto_get_i64(&m, "job", 1, INT64_MAX, &j->job_id) != 0 ||
        proto_get_i64(&m, "alert", 1, INT64_MAX, &j->alert_id) != 0)
        goto fail;
    j->count = 1;
    if (proto_get_i64(&m, "count", 1, PROTO_MAX_ITEMS, &j->count) < 0)
        goto fail;
    int r = proto_get_str(&m, "uuid", AUDIT_ID_LEN, 0, &uuid);
    if (r < 0 || (r == 0 && !audit_id_valid(uuid, strlen(uuid))))
        goto fail;
    if (r == 0)
        for (size_t i = 0; i <= AUDIT_ID_LEN; i++)
            j->alert_uuid[i] = (char)tolower((unsigned char)uuid[i]);
    free(uuid);
    proto_msg_destroy(&m);
    return 0;
fail:
    free(uuid);
    proto_msg_destroy(&m);
    memset(j, 0, sizeof *j);
    return -1;
}
