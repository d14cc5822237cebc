/*
 * health.c - GET /health (public): the original's body; 503 when the database is down. Only
 * the built-in enrichment providers are listed: the names of custom ones are not for anyone
 * without a key.
 */
#include "intake.h"
#include "util.h"

#include <stdlib.h>

static void on_health(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    int db_ok = res && !err && PQntuples(res) == 1;
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(db_ok ? "ok" : "down"));
    json_object_set_new(body, "version", json_string(rc->in->cfg.app_version));
    json_object_set_new(body, "database", json_string(db_ok ? "ok" : "error"));
    json_object_set_new(body, "queue", json_string(db_ok ? "ok" : "error"));
    json_object_set_new(body, "queue_depth",
                        json_integer(db_ok ? atoll(PQgetvalue(res, 0, 0)) : 0));
    json_t *prov = db_ok ? json_loads(PQgetvalue(res, 0, 1), 0, NULL) : NULL;
    json_object_set_new(body, "enrichment_providers", prov ? prov : json_object());
    reply_json(rc, db_ok ? 200 : 503, body);
}

void route_health(struct reqctx *rc)
{
    pg_exec_timeout(rc->in->pg,
                    "SELECT (SELECT count(*) FROM enrichment_jobs "
                    "         WHERE status IN ('pending', 'running')), "
                    "       coalesce((SELECT json_object_agg(provider_name, "
                    "           CASE WHEN is_active AND (auth_type = 'no_auth' "
                    "                OR auth_config IS NOT NULL OR env_var_mapping IS NOT NULL) "
                    "           THEN 'configured' ELSE 'unconfigured' END) "
                    "         FROM enrichment_providers WHERE is_builtin), '{}'::json)::text",
                    0, NULL, 2000, on_health, rc);
}
