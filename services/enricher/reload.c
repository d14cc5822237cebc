/*
 * reload.c - the provider snapshot: first load at start, reloads on NOTIFY calseta_providers
 * (a trigger fires on any change to providers, extractions or indicator mappings) and every
 * ENRICHER_PROVIDER_RELOAD_SECONDS as a safety net. The first load also checks that every
 * stored credential was encrypted under this ENCRYPTION_KEY (HMAC only, nothing decrypted) and
 * stops the worker with a clear error if not; later mismatches only disable that provider's
 * stored credentials, with a warning.
 */
#include "creds.h"
#include "enricher.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_tokens(struct enricher *en, struct provider_set *s, int first)
{
    for (size_t i = 0; i < s->n; i++) {
        struct provider *p = &s->p[i];
        if (p->plaintext_auth)
            msg_warn("provider %s: auth_config is stored unencrypted; it is ignored (store "
                     "credentials only as {\"_encrypted\": Fernet token})",
                     p->name);
        if (!p->encrypted_auth || creds_token_matches(en->creds, p->encrypted_auth) == 0)
            continue;
        if (first)
            msg_fatal("ENCRYPTION_KEY does not decrypt the stored credentials of provider %s: "
                      "set ENCRYPTION_KEY to the key they were encrypted with (or re-encrypt "
                      "them with `calseta rotate-encryption-key`)",
                      p->name);
        msg_warn("provider %s: stored credentials do not match ENCRYPTION_KEY; ignoring them",
                 p->name);
        explicit_bzero(p->encrypted_auth, strlen(p->encrypted_auth));
        free(p->encrypted_auth);
        p->encrypted_auth = NULL;
    }
}

static void on_reload_timer(uv_timer_t *t)
{
    providers_reload(t->data);
}

static void on_loaded(void *arg, PGresult *res, const char *err)
{
    struct enricher *en = arg;
    en->loading = 0;
    char perr[256];
    json_t *doc = NULL;
    struct provider_set *s = NULL;
    if (err) {
        msg_warn("loading enrichment providers failed: %s", err);
        goto out;
    }
    doc = PQntuples(res) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    s = doc ? provider_set_parse(doc, &en->opt.provider, perr, sizeof perr) : NULL;
    if (!s) {
        msg_warn("loading enrichment providers failed: %s", doc ? perr : "no document");
        goto out;
    }
    int first = en->providers == NULL;
    check_tokens(en, s, first);
    provider_set_unref(en->providers);
    en->providers = s;
    cache_clear(en->cache);
    msg_info("enrichment providers %s: %zu active, %zu pass-3 mappings",
             first ? "loaded" : "reloaded", s->n, s->nmappings);
    if (first)
        claim_kick(en);
out:
    json_decref(doc);
    if (en->draining)
        return;
    if (en->reload_again) {
        en->reload_again = 0;
        providers_reload(en);
    } else if (!en->providers) {
        uv_timer_start(&en->reload_timer, on_reload_timer, 1000, (uint64_t)en->opt.reload_s * 1000);
    }
}

void providers_reload(struct enricher *en)
{
    if (en->loading) {
        en->reload_again = 1;
        return;
    }
    en->loading = 1;
    pg_exec(en->pg, PROVIDER_CONFIG_SQL, 0, NULL, on_loaded, en);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    struct enricher *en = arg;
    (void)channel;
    (void)payload; /* NULL: notifications may have been missed; reloading covers it */
    providers_reload(en);
}

void providers_start(struct enricher *en)
{
    uv_timer_init(en->loop, &en->reload_timer);
    en->reload_timer.data = en;
    uv_timer_start(&en->reload_timer, on_reload_timer, (uint64_t)en->opt.reload_s * 1000,
                   (uint64_t)en->opt.reload_s * 1000);
    pg_pool_listen(en->pg, "calseta_providers", on_notify, en);
    providers_reload(en);
}

void providers_stop(struct enricher *en)
{
    uv_timer_stop(&en->reload_timer);
    uv_close((uv_handle_t *)&en->reload_timer, NULL);
}
