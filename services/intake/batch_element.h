/*
 * batch_element.h - one normalised alert as an element of the batch document that
 * calseta_ingest_batch() reads, written straight as JSON text.
 */
#ifndef INTAKE_BATCH_ELEMENT_H
#define INTAKE_BATCH_ELEMENT_H

#include "indicators.h"
#include "source.h"
#include "util.h"

/* The alert's element. Its payload goes beside the batch (the intake's send_batch), always the
 * payload's own text (POST /v1/alerts sends its "payload" member's, not the whole body).
 * check_numbers: the payload has a number PostgreSQL's numeric may not hold, so the database
 * converts it to jsonb once to refuse it at ingest rather than store a payload that a jsonb
 * reader (enrichment, workflows) could not read. */
struct element {
    const struct normalized_alert *na;
    const char *source, *occurred_at, *fingerprint, *key_prefix;
    const struct indicator_set *set;
    int check_numbers;
};

/* Appends e's element (a JSON object, keys in a fixed order) to t. */
void element_text(struct buf *t, const struct element *e);

#endif
