/*
 * context_docs.c - /v1/context-documents (runbooks, SOPs, ...): list with filters, create from
 * JSON or from an uploaded file (multipart/form-data), get, patch, delete; and
 * GET /v1/alerts/{uuid}/context, the documents that apply to an alert.
 *
 * Validation follows the original, with its defects fixed: a body that is not JSON is a 400
 * (never a 500), tags and targeting_rules of a form are checked like JSON ones (422), and the
 * targeting rules of every save go through targeting_validate(). Uploads: plain text and
 * Markdown are stored as they are, HTML is converted to Markdown (html2md.c); anything else
 * (PDF, DOCX, PPTX, ...) is 422 UNSUPPORTED_FORMAT naming the formats that are supported.
 * Applicability is the SQL function calseta_applicable_documents(alert_id).
 */
#include "agents_api.h"
#include "catalogue.h"
#include "html2md.h"
#include "http_server.h"
#include "multipart.h"
#include "targeting.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const DOC_TYPES[] = {"runbook",         "ir_plan", "sop", "playbook",
                                        "detection_guide", "other",   NULL};
static const char NOT_FOUND[] = "Context document not found.";
#define SUPPORTED_FORMATS "plain text (.txt), Markdown (.md, .markdown), HTML (.html, .htm)"

/* ---- validation ---------------------------------------------------------------------------- */

/* Checks a create (all required fields) or patch body; replies 422 and returns -1 on a
 * problem. Null values of a patch mean "unchanged" and are removed from the body. */
static int validate_doc(struct reqctx *rc, json_t *body, int create)
{
    char msg[1200];
    const char *k;
    json_t *v;
    void *tmp;
    if (!create)
        json_object_foreach_safe(body, tmp, k, v) if (json_is_null(v)) json_object_del(body, k);
    if (create) {
        static const char *const req[] = {"title", "document_type", "content"};
        for (int i = 0; i < 3; i++)
            if (!json_object_get(body, req[i])) {
                snprintf(msg, sizeof msg, "%s: Field required", req[i]);
                goto bad;
            }
    }
    msg[0] = 0;
    if ((v = json_object_get(body, "title")) && !json_is_string(v))
        snprintf(msg, sizeof msg, "title: Input should be a valid string");
    else if ((v = json_object_get(body, "content")) && !json_is_string(v))
        snprintf(msg, sizeof msg, "content: Input should be a valid string");
    else if ((v = json_object_get(body, "description")) && !json_is_string(v) &&
             !json_is_null(v))
        snprintf(msg, sizeof msg, "description: Input should be a valid string");
    else if ((v = json_object_get(body, "document_type")) &&
             !str_in(json_string_value(v), DOC_TYPES))
        snprintf(msg, sizeof msg,
                 "document_type: Input should be 'runbook', 'ir_plan', 'sop', 'playbook', "
                 "'detection_guide' or 'other'");
    else if ((v = json_object_get(body, "is_global")) && !json_is_boolean(v))
        snprintf(msg, sizeof msg, "is_global: Input should be a valid boolean");
    else if ((v = json_object_get(body, "tags")) && !is_string_list(v))
        snprintf(msg, sizeof msg, "tags: Input should be a valid list of strings");
    else if ((v = json_object_get(body, "targeting_rules")) && !json_is_null(v)) {
        char why[1024];
        if (targeting_validate(v, "targeting_rules", why, sizeof why) != 0)
            snprintf(msg, sizeof msg, "targeting_rules: %s", why);
    }
    if (!msg[0])
        return 0;
bad:
    reply_error(rc, 422, "VALIDATION_ERROR", msg, NULL);
    return -1;
}

/* ---- create ---------------------------------------------------------------------------------- */

static void insert_doc(struct reqctx *rc, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_t *params = json_array();
    param_add(params, text);
    free(text);
    cat_exec(rc,
             "INSERT INTO context_documents (title, document_type, is_global, description, "
              "content, tags, targeting_rules) "
              "SELECT d->>'title', d->>'document_type', coalesce((d->>'is_global')::boolean, "
              "false), d->>'description', d->>'content', "
              "ARRAY(SELECT jsonb_array_elements_text(coalesce(d->'tags', '[]'))), "
              "CASE WHEN jsonb_typeof(d->'targeting_rules') = 'object' THEN d->'targeting_rules' "
              "END FROM (SELECT $1::jsonb AS d) x "
             "RETURNING calseta_context_document_json(context_documents, true)::text",
             params, 201, NOT_FOUND, NULL);
}

static int ext_is(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    for (; *exts; exts++)
        if (!strcasecmp(dot + 1, *exts))
            return 1;
    return 0;
}

static void unsupported(struct reqctx *rc, const char *name, const char *why)
{
    char msg[800];
    snprintf(msg, sizeof msg,
             "Cannot convert uploaded file '%.200s' to markdown: %s. Supported formats: "
             SUPPORTED_FORMATS ".",
             name, why);
    reply_error(rc, 422, "UNSUPPORTED_FORMAT", msg, NULL);
}

/* The file part as Markdown, or NULL after replying 422. */
static json_t *file_markdown(struct reqctx *rc, const struct multipart_part *f)
{
    static const char *const text_exts[] = {"txt", "text", "md", "markdown", NULL};
    static const char *const html_exts[] = {"html", "htm", "xhtml", NULL};
    const char *name = f->filename[0] ? f->filename : "upload";
    int html = ext_is(name, html_exts);
    if (!html && !ext_is(name, text_exts) && strchr(name, '.')) {
        unsupported(rc, name, "this file type is not supported");
        return NULL;
    }
    if (memchr(f->data, 0, f->len) || (f->len >= 4 && !memcmp(f->data, "%PDF", 4)) ||
        (f->len >= 4 && !memcmp(f->data, "PK\003\004", 4))) {
        unsupported(rc, name, "the file is binary, not text");
        return NULL;
    }
    json_t *s;
    if (html) {
        char *md = html_to_markdown(f->data, f->len);
        s = json_string(md);
        free(md);
    } else {
        s = json_stringn(f->data, f->len);
    }
    if (!s)
        unsupported(rc, name, "the file is not valid UTF-8 text");
    return s;
}

static json_t *form_text(const struct multipart_form *form, const char *name)
{
    const struct multipart_part *p = multipart_get(form, name);
    return p ? json_stringn(p->data, p->len) : NULL;
}

/* The form as a JSON create body, or NULL after replying. */
static json_t *form_doc(struct reqctx *rc, const struct multipart_form *form)
{
    char msg[1200];
    json_t *doc = json_object();
    json_t *title = form_text(form, "title"), *type = form_text(form, "document_type");
    if (!title || !type) {
        json_decref(title);
        json_decref(type);
        reply_error(rc, 422, "VALIDATION_ERROR", "title and document_type are required form fields",
                    NULL);
        goto fail;
    }
    json_object_set_new(doc, "title", title);
    json_object_set_new(doc, "document_type", type);
    json_t *g = form_text(form, "is_global");
    const char *gs = json_string_value(g);
    json_object_set_new(doc, "is_global",
                        json_boolean(gs && (!strcasecmp(gs, "true") || !strcmp(gs, "1") ||
                                            !strcasecmp(gs, "yes"))));
    json_decref(g);
    json_t *d = form_text(form, "description");
    if (d)
        json_object_set_new(doc, "description", d);
    json_t *tags = form_text(form, "tags");
    if (tags) {
        const char *ts = json_string_value(tags);
        json_t *arr;
        if (ts[0] == '[') {
            json_error_t e;
            arr = json_loads(ts, JSON_REJECT_DUPLICATES, &e);
            if (!is_string_list(arr)) {
                json_decref(arr);
                json_decref(tags);
                snprintf(msg, sizeof msg,
                         "tags field must be a JSON array or comma-separated string: %s",
                         e.text[0] ? e.text : "a JSON array of strings is required");
                reply_error(rc, 422, "VALIDATION_ERROR", msg, NULL);
                goto fail;
            }
        } else {
            arr = comma_list(ts);
        }
        json_decref(tags);
        json_object_set_new(doc, "tags", arr);
    }
    json_t *tr = form_text(form, "targeting_rules");
    if (tr) {
        json_error_t e;
        json_t *rules = json_loads(json_string_value(tr), JSON_REJECT_DUPLICATES, &e);
        json_decref(tr);
        if (!json_is_object(rules)) {
            json_decref(rules);
            snprintf(msg, sizeof msg, "targeting_rules must be a JSON object: %s",
                     e.text[0] ? e.text : "not an object");
            reply_error(rc, 422, "VALIDATION_ERROR", msg, NULL);
            goto fail;
        }
        json_object_set_new(doc, "targeting_rules", rules);
    }
    const struct multipart_part *file = multipart_get(form, "file");
    if (!file || !file->has_filename) {
        reply_error(rc, 422, "VALIDATION_ERROR",
                    "file field is required for multipart/form-data uploads", NULL);
        goto fail;
    }
    json_t *content = file_markdown(rc, file);
    if (!content)
        goto fail;
    json_object_set_new(doc, "content", content);
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* Parses the body as a JSON object: 400 INVALID_JSON for bytes that are not JSON, 422 for
 * JSON that is not an object. */
static json_t *json_body(struct reqctx *rc)
{
    json_error_t e;
    struct http_request *req = rc->req;
    json_t *v = json_loadb(req->body.data ? req->body.data : "", req->body.len,
                           JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        char msg[300];
        snprintf(msg, sizeof msg, "Request body is not valid JSON: %s (line %d, column %d)",
                 e.text, e.line, e.column);
        reply_error(rc, 400, "INVALID_JSON", msg, NULL);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        reply_error(rc, 422, "VALIDATION_ERROR", "The request body must be a JSON object.", NULL);
        return NULL;
    }
    return v;
}

void route_create_context_document(struct reqctx *rc)
{
    const char *ct = http_header_get(rc->req, "content-type", NULL);
    json_t *doc;
    if (ct && strcasestr(ct, "multipart/form-data")) {
        struct multipart_form *form = xcalloc(1, sizeof *form);
        char err[200];
        if (multipart_parse(ct, rc->req->body.data ? rc->req->body.data : "", rc->req->body.len,
                            form, err, sizeof err) != 0) {
            free(form);
            char msg[300];
            snprintf(msg, sizeof msg, "Malformed multipart/form-data body: %s", err);
            reply_error(rc, 400, "INVALID_MULTIPART", msg, NULL);
            return;
        }
        doc = form_doc(rc, form);
        free(form);
    } else {
        doc = json_body(rc);
    }
    if (!doc)
        return;
    if (validate_doc(rc, doc, 1) == 0)
        insert_doc(rc, doc);
    json_decref(doc);
}

/* ---- read, patch, delete ----------------------------------------------------------------------- */

void route_list_context_documents(struct reqctx *rc)
{
    int page, page_size;
    char v[512];
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    const char *type_list = NULL, *global = NULL;
    if (query_param(rc, "is_global", v, sizeof v)) {
        if (strcmp(v, "true") && strcmp(v, "false")) {
            reply_validation_error(rc, "bool_parsing", "query", "is_global",
                                   "Input should be a valid boolean");
            return;
        }
        global = !strcmp(v, "true") ? "true" : "false";
    }
    char types[512];
    if (query_param(rc, "document_type", types, sizeof types))
        type_list = types;
    static const char *const sorts[] = {"created_at", "document_type", "title", "updated_at",
                                        NULL};
    const char *sort = "created_at", *dir = "DESC";
    if (query_param(rc, "sort_by", v, sizeof v)) {
        if (!str_in(v, sorts)) {
            reply_error(rc, 400, "VALIDATION_ERROR",
                        "sort_by must be one of: ['created_at', 'document_type', 'title', "
                        "'updated_at']",
                        NULL);
            return;
        }
        sort = !strcmp(v, "title") ? "title" : !strcmp(v, "document_type") ? "document_type"
                                           : !strcmp(v, "updated_at")      ? "updated_at"
                                                                           : "created_at";
    }
    if (query_param(rc, "sort_order", v, sizeof v)) {
        if (strcmp(v, "asc") && strcmp(v, "desc")) {
            reply_error(rc, 400, "VALIDATION_ERROR", "sort_order must be 'asc' or 'desc'", NULL);
            return;
        }
        dir = !strcmp(v, "asc") ? "ASC" : "DESC";
    }
    char lim[16], off[24];
    pagination_params(page, page_size, lim, off);
    /* The count and the page are separate reads; the page cuts the sort keys before any
     * document (content included) is read whole. */
#define DOCS_WHERE                                                                                 \
    "($1::text IS NULL OR d.document_type = ANY (string_to_array(replace($1, ' ', ''), ','))) "   \
    "AND ($2::boolean IS NULL OR d.is_global = $2::boolean)"
    char *sql = xasprintf(
        "SELECT (SELECT count(*) FROM context_documents d WHERE " DOCS_WHERE "), "
        "coalesce((SELECT jsonb_agg(calseta_context_document_json(d, false) ORDER BY x.k %s, "
        "x.id %s) FROM (SELECT d.%s AS k, d.id FROM context_documents d WHERE " DOCS_WHERE
        " ORDER BY 1 %s, 2 %s LIMIT $3::int OFFSET $4::bigint) x JOIN context_documents d ON "
        "d.id = x.id), '[]'::jsonb)::text",
        dir, dir, sort, dir, dir);
#undef DOCS_WHERE
    const char *p[4] = {type_list, global, lim, off};
    list_query(rc, sql, 4, p, page, page_size, NOT_FOUND, NULL);
    free(sql);
}

void route_get_context_document(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_context_document_json(d, true)::text FROM context_documents d "
                  "WHERE d.uuid = $1",
                  200, NOT_FOUND);
}

void route_patch_context_document(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = json_body(rc);
    if (!body)
        return;
    if (validate_doc(rc, body, 0) != 0) {
        json_decref(body);
        return;
    }
    cat_save(rc, uuid, body,
             "UPDATE context_documents d SET "
             "title = coalesce($2::jsonb->>'title', d.title), "
             "document_type = coalesce($2::jsonb->>'document_type', d.document_type), "
             "is_global = coalesce(($2::jsonb->>'is_global')::boolean, d.is_global), "
             "description = coalesce($2::jsonb->>'description', d.description), "
             "content = coalesce($2::jsonb->>'content', d.content), "
             "tags = CASE WHEN $2::jsonb ? 'tags' THEN ARRAY(SELECT jsonb_array_elements_text("
             "$2::jsonb->'tags')) ELSE d.tags END, "
             "targeting_rules = coalesce($2::jsonb->'targeting_rules', d.targeting_rules), "
             "version = d.version + CASE WHEN $2::jsonb ? 'content' THEN 1 ELSE 0 END, "
             "updated_at = now() WHERE d.uuid = $1 "
             "RETURNING calseta_context_document_json(d, true)::text",
             200, NOT_FOUND, NULL);
}

void route_delete_context_document(struct reqctx *rc)
{
    cat_exec_uuid(rc, "DELETE FROM context_documents WHERE uuid = $1 RETURNING '{}'", 204,
                  NOT_FOUND);
}

void route_alert_context(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_alert_context_json(a.id)::text FROM alerts a WHERE a.uuid = $1",
                  200, "Alert not found.");
}
