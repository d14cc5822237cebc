/*
 * batch_element.c - one alert as an element of the batch document, written as text.
 */
#include "batch_element.h"
#include "jsontext.h"

#include <stdlib.h>
#include <string.h>

/* The indicators to store: all of them count for the fingerprint, but a value longer than
 * INDICATOR_STORE_MAX cannot be indexed (and is no indicator anyone looks up). */
#define INDICATOR_STORE_MAX 2048
static void put_indicators(struct buf *t, const struct indicator_set *set)
{
    int first = 1;
    buf_append(t, "[", 1);
    for (size_t i = 0; i < set->n; i++) {
        size_t n = strlen(set->items[i].value);
        if (n > INDICATOR_STORE_MAX)
            continue;
        buf_puts(t, first ? "{\"type\":" : ",{\"type\":");
        buf_json_cstr(t, set->items[i].type);
        buf_puts(t, ",\"value\":");
        buf_json_string(t, set->items[i].value, n);
        buf_append(t, "}", 1);
        first = 0;
    }
    buf_append(t, "]", 1);
}

static void put_tags(struct buf *t, json_t *tags)
{
    size_t i;
    json_t *v;
    buf_append(t, "[", 1);
    json_array_foreach(tags, i, v)
    {
        if (i)
            buf_append(t, ",", 1);
        if (json_is_string(v)) {
            buf_json_string(t, json_string_value(v), json_string_length(v));
        } else {
            char *x = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            buf_puts(t, x ? x : "null");
            free(x);
        }
    }
    buf_append(t, "]", 1);
}

/* Written as text: a jansson tree built only to be serialised once cost about a tenth of the
 * intake's CPU per alert. */
void element_text(struct buf *t, const struct element *e)
{
    buf_reserve(t, 512);
    buf_puts(t, "{\"title\":");
    buf_json_cstr(t, e->na->title);
    buf_puts(t, ",\"severity\":");
    buf_json_cstr(t, e->na->severity);
    buf_puts(t, ",\"source_name\":");
    buf_json_cstr(t, e->source);
    buf_puts(t, ",\"description\":");
    buf_json_cstr(t, e->na->description);
    buf_puts(t, ",\"occurred_at\":");
    buf_json_cstr(t, e->occurred_at);
    if (e->check_numbers)
        buf_puts(t, ",\"check_numbers\":true");
    buf_puts(t, ",\"tags\":");
    put_tags(t, e->na->tags);
    buf_puts(t, ",\"fingerprint\":");
    buf_json_cstr(t, e->fingerprint);
    buf_puts(t, ",\"indicators\":");
    put_indicators(t, e->set);
    buf_puts(t, ",\"rule_ref\":");
    buf_json_cstr(t, e->na->source_rule_ref);
    buf_puts(t, ",\"actor_key_prefix\":");
    buf_json_cstr(t, e->key_prefix);
    buf_append(t, "}", 1);
}

