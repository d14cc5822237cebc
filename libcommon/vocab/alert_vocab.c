/*
 * alert_vocab.c - the fixed vocabularies of an alert (see alert_vocab.h).
 */
#include "alert_vocab.h"

#include <string.h>

const char *const ALERT_STATUSES[] = {"Open", "Triaging", "Escalated", "Closed", NULL};
const char *const ALERT_SEVERITIES[] = {"Pending", "Informational", "Low", "Medium",
                                        "High",    "Critical",      NULL};
const char *const ENRICHMENT_STATUSES[] = {"Pending", "Enriched", "Failed", NULL};
const char *const MALICE_LEVELS[] = {"Pending", "Benign", "Suspicious", "Malicious", NULL};
const char *const CLOSE_CLASSIFICATIONS[] = {"True Positive - Suspicious Activity",
                                             "Benign Positive - Suspicious but Expected",
                                             "False Positive - Incorrect Detection Logic",
                                             "False Positive - Inaccurate Data",
                                             "Undetermined",
                                             "Duplicate",
                                             "Not Applicable",
                                             NULL};

int vocab_has(const char *const *set, const char *s)
{
    for (; s && *set; set++)
        if (!strcmp(s, *set))
            return 1;
    return 0;
}
