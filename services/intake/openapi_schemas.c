/*
 * openapi_schemas.c - the component schemas of the OpenAPI document (openapi.c): the bodies
 * that route table entries name. Written as plain JSON inside JSON() (stringised by the
 * preprocessor), so it reads and edits as JSON; a route naming a schema that is missing here
 * fails test_openapi.py.
 */
#include "openapi.h"

#define JSON(...) #__VA_ARGS__

const char OPENAPI_SCHEMAS[] = JSON({
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"}
                },
                "required": ["code", "message", "details"]
            }
        },
        "required": ["error"],
        "description": "Every error: a stable code, a readable message, details (validation errors list the fields)."
    },
    "ListMeta": {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "page": {"type": "integer"},
            "page_size": {"type": "integer"},
            "total_pages": {"type": "integer"}
        },
        "required": ["total", "page", "page_size", "total_pages"]
    },
    "Object": {"type": "object", "description": "A JSON object (see the route's description)."},
    "DetectionRule": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "source_rule_id": {"type": ["string", "null"]},
            "source_name": {"type": ["string", "null"]},
            "severity": {"type": ["string", "null"]},
            "is_active": {"type": "boolean"},
            "mitre_tactics": {"type": "array", "items": {"type": "string"}},
            "mitre_techniques": {"type": "array", "items": {"type": "string"}},
            "mitre_subtechniques": {"type": "array", "items": {"type": "string"}},
            "data_sources": {"type": "array", "items": {"type": "string"}},
            "run_frequency": {"type": ["string", "null"]},
            "created_by": {"type": ["string", "null"]},
            "documentation": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        }
    },
    "DetectionRuleCreate": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 500},
            "source_rule_id": {"type": ["string", "null"]},
            "source_name": {"type": ["string", "null"]},
            "severity": {"type": ["string", "null"]},
            "is_active": {"type": "boolean"},
            "mitre_tactics": {"type": "array", "items": {"type": "string"}},
            "mitre_techniques": {"type": "array", "items": {"type": "string"}},
            "mitre_subtechniques": {"type": "array", "items": {"type": "string"}},
            "data_sources": {"type": "array", "items": {"type": "string"}},
            "run_frequency": {"type": ["string", "null"]},
            "created_by": {"type": ["string", "null"]},
            "documentation": {"type": ["string", "null"]}
        },
        "required": ["name"],
        "description": "(source_name, source_rule_id) is unique: a second rule with both equal is refused with 409. created_by defaults to the name of the calling key."
    },
    "DetectionRulePatch": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 500},
            "severity": {"type": ["string", "null"]},
            "is_active": {"type": "boolean"},
            "mitre_tactics": {"type": "array", "items": {"type": "string"}},
            "mitre_techniques": {"type": "array", "items": {"type": "string"}},
            "mitre_subtechniques": {"type": "array", "items": {"type": "string"}},
            "data_sources": {"type": "array", "items": {"type": "string"}},
            "documentation": {"type": ["string", "null"]}
        },
        "description": "null or absent = unchanged."
    },
    "DetectionRuleMetrics": {
        "type": "object",
        "properties": {
            "detection_rule_uuid": {"type": "string", "format": "uuid"},
            "detection_rule_name": {"type": "string"},
            "period_from": {"type": "string", "format": "date-time"},
            "period_to": {"type": "string", "format": "date-time"},
            "total_alerts": {"type": "integer"},
            "active_alerts": {"type": "integer"},
            "alerts_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alerts_by_severity": {"type": "object", "additionalProperties": {"type": "integer"}},
            "false_positive_rate": {"type": "number"},
            "true_positive_rate": {"type": "number"},
            "close_classifications": {
                "type": "object",
                "additionalProperties": {"type": "integer"}
            },
            "alerts_over_time": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "count": {"type": "integer"}
                    }
                }
            },
            "fp_over_time": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "count": {"type": "integer"}
                    }
                }
            },
            "mtta_seconds": {"type": ["number", "null"]},
            "mttc_seconds": {"type": ["number", "null"]},
            "severity_distribution": {
                "type": "object",
                "additionalProperties": {"type": "integer"}
            },
            "top_indicators": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "value": {"type": "string"},
                        "count": {"type": "integer"},
                        "malice": {"type": "string"}
                    }
                }
            },
            "alert_sources": {"type": "object", "additionalProperties": {"type": "integer"}}
        }
    },
    "Indicator": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "type": {
                "type": "string",
                "enum": [
                    "ip",
                    "domain",
                    "hash_md5",
                    "hash_sha1",
                    "hash_sha256",
                    "url",
                    "email",
                    "account"
                ]
            },
            "value": {"type": "string"},
            "malice": {"type": "string", "enum": ["Pending", "Benign", "Suspicious", "Malicious"]},
            "malice_source": {"type": "string", "enum": ["enrichment", "analyst"]},
            "malice_overridden_at": {"type": ["string", "null"], "format": "date-time"},
            "first_seen": {"type": "string", "format": "date-time"},
            "last_seen": {"type": "string", "format": "date-time"},
            "is_enriched": {"type": "boolean"},
            "enrichment_results": {
                "type": ["object", "null"],
                "description": "Per provider; raw answers only on GET and for keys with enrichments:read."
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        }
    },
    "IndicatorPatch": {
        "type": "object",
        "properties": {
            "malice": {
                "type": ["string", "null"],
                "enum": ["Pending", "Benign", "Suspicious", "Malicious", null]
            }
        },
        "description": "A level sets an analyst override; null or {} resets to the verdict of the stored enrichment results."
    },
    "AlertIndicatorsAdd": {
        "type": "object",
        "properties": {
            "indicators": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": [
                                "ip",
                                "domain",
                                "hash_md5",
                                "hash_sha1",
                                "hash_sha256",
                                "url",
                                "email",
                                "account"
                            ]
                        },
                        "value": {"type": "string", "minLength": 1, "maxLength": 2048}
                    },
                    "required": ["type", "value"]
                }
            }
        },
        "required": ["indicators"]
    },
    "AlertIndicatorsAdded": {
        "type": "object",
        "properties": {
            "added_count": {"type": "integer"},
            "indicators": {"type": "array", "items": {"$ref": "#/components/schemas/Indicator"}},
            "enrich_requested": {"type": "boolean"}
        }
    },
    "GraphNode": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "title": {"type": "string"},
            "severity": {"type": "string"},
            "status": {"type": "string"},
            "source_name": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}}
        }
    },
    "RelationshipGraph": {
        "type": "object",
        "properties": {
            "alert": {"$ref": "#/components/schemas/GraphNode"},
            "indicators": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "uuid": {"type": "string", "format": "uuid"},
                        "type": {"type": "string"},
                        "value": {"type": "string"},
                        "malice": {"type": "string"},
                        "first_seen": {"type": "string", "format": "date-time"},
                        "last_seen": {"type": "string", "format": "date-time"},
                        "is_enriched": {"type": "boolean"},
                        "enrichment_summary": {
                            "type": "object",
                            "additionalProperties": {"type": "string"}
                        },
                        "total_alert_count": {
                            "type": "integer",
                            "description": "Other alerts linked to the indicator."
                        },
                        "sibling_alerts": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/GraphNode"}
                        }
                    }
                }
            }
        }
    },
    "IndicatorMapping": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "source_name": {"type": ["string", "null"]},
            "field_path": {"type": "string"},
            "indicator_type": {
                "type": "string",
                "enum": [
                    "ip",
                    "domain",
                    "hash_md5",
                    "hash_sha1",
                    "hash_sha256",
                    "url",
                    "email",
                    "account"
                ]
            },
            "extraction_target": {
                "type": "string",
                "enum": ["normalized", "raw_payload", "source_plugin"]
            },
            "is_system": {"type": "boolean"},
            "is_active": {"type": "boolean"},
            "description": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        }
    },
    "IndicatorMappingCreate": {
        "type": "object",
        "properties": {
            "source_name": {"type": ["string", "null"]},
            "field_path": {"type": "string"},
            "indicator_type": {
                "type": "string",
                "enum": [
                    "ip",
                    "domain",
                    "hash_md5",
                    "hash_sha1",
                    "hash_sha256",
                    "url",
                    "email",
                    "account"
                ]
            },
            "extraction_target": {"type": "string", "enum": ["normalized", "raw_payload"]},
            "is_active": {"type": "boolean"},
            "description": {"type": ["string", "null"]}
        },
        "required": ["field_path", "indicator_type"]
    },
    "IndicatorMappingPatch": {
        "type": "object",
        "properties": {
            "field_path": {"type": "string"},
            "indicator_type": {
                "type": "string",
                "enum": [
                    "ip",
                    "domain",
                    "hash_md5",
                    "hash_sha1",
                    "hash_sha256",
                    "url",
                    "email",
                    "account"
                ]
            },
            "is_active": {"type": "boolean"},
            "description": {"type": ["string", "null"]}
        },
        "description": "System mappings: only is_active may change (422 SYSTEM_MAPPING_READONLY otherwise)."
    },
    "TestExtraction": {
        "type": "object",
        "properties": {"source_name": {"type": "string"}, "raw_payload": {"type": "object"}},
        "required": ["source_name", "raw_payload"]
    },
    "TestExtractionResult": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "source_name": {"type": "string"},
            "passes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "pass_name": {"type": "string"},
                        "pass_label": {"type": "string"},
                        "indicators": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "value": {"type": "string"},
                                    "source_field": {"type": ["string", "null"]}
                                }
                            }
                        },
                        "error": {"type": ["string", "null"]}
                    }
                }
            },
            "deduplicated": {"type": "array", "items": {"type": "object"}},
            "deduplicated_count": {"type": "integer"},
            "normalization_preview": {"type": ["object", "null"]},
            "error_message": {"type": ["string", "null"]},
            "duration_ms": {"type": "number"}
        }
    },
    "Source": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "source_name": {"type": "string"},
            "display_name": {"type": "string"},
            "is_active": {"type": "boolean"},
            "auth_type": {"type": ["string", "null"]},
            "documentation": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        },
        "description": "auth_config is write-only and never returned."
    },
    "SourceCreate": {
        "type": "object",
        "properties": {
            "source_name": {
                "type": "string",
                "enum": ["sentinel", "elastic", "splunk", "generic"]
            },
            "display_name": {"type": "string", "minLength": 1, "maxLength": 255},
            "is_active": {"type": "boolean"},
            "auth_type": {"type": ["string", "null"]},
            "auth_config": {
                "type": ["object", "null"],
                "description": "Stored Fernet-encrypted; at most 256 KB."
            },
            "documentation": {"type": ["string", "null"]}
        },
        "required": ["source_name", "display_name"]
    },
    "SourcePatch": {
        "type": "object",
        "properties": {
            "display_name": {"type": "string", "minLength": 1, "maxLength": 255},
            "is_active": {"type": "boolean"},
            "auth_type": {"type": ["string", "null"]},
            "auth_config": {"type": ["object", "null"]},
            "documentation": {"type": ["string", "null"]}
        },
        "description": "null or absent = unchanged."
    },
    "AlertMetrics": {
        "type": "object",
        "properties": {
            "period_from": {"type": "string", "format": "date-time"},
            "period_to": {"type": "string", "format": "date-time"},
            "total_alerts": {"type": "integer"},
            "alerts_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alerts_by_severity": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alerts_by_source": {"type": "object", "additionalProperties": {"type": "integer"}},
            "alerts_over_time": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "count": {"type": "integer"}
                    }
                }
            },
            "false_positive_rate": {"type": "number"},
            "mean_time_to_enrich": {"type": ["number", "null"]},
            "mean_time_to_detect": {"type": ["number", "null"]},
            "mean_time_to_acknowledge": {"type": ["number", "null"]},
            "mean_time_to_triage": {"type": ["number", "null"]},
            "mean_time_to_conclusion": {"type": ["number", "null"]},
            "active_alerts_by_severity": {
                "type": "object",
                "additionalProperties": {"type": "integer"}
            },
            "top_detection_rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "uuid": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "count": {"type": "integer"}
                    }
                }
            },
            "enrichment_coverage": {"type": "number"}
        }
    },
    "WorkflowMetrics": {
        "type": "object",
        "properties": {
            "period_from": {"type": "string", "format": "date-time"},
            "period_to": {"type": "string", "format": "date-time"},
            "total_configured": {"type": "integer"},
            "workflows_by_type": {"type": "object", "additionalProperties": {"type": "integer"}},
            "workflow_run_count": {"type": "integer"},
            "workflow_success_rate": {"type": "number"},
            "workflow_runs_over_time": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "count": {"type": "integer"}
                    }
                }
            },
            "time_saved_hours": {"type": "number"},
            "most_executed_workflows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "uuid": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "run_count": {"type": "integer"}
                    }
                }
            }
        }
    },
    "QueueMetrics": {
        "type": "object",
        "properties": {
            "queue": {"type": "string"},
            "pending": {"type": "integer"},
            "in_progress": {"type": "integer"},
            "succeeded_30d": {"type": "integer"},
            "failed_30d": {"type": "integer"},
            "avg_duration_seconds": {"type": ["number", "null"]},
            "oldest_pending_age_seconds": {"type": ["number", "null"]}
        }
    },
    "MetricsSummary": {
        "type": "object",
        "properties": {
            "period": {"type": "string"},
            "alerts": {"type": "object"},
            "workflows": {"type": "object"},
            "approvals": {"type": "object"},
            "platform": {"type": "object"},
            "queue": {
                "type": "object",
                "properties": {
                    "queues": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/QueueMetrics"}
                    },
                    "total_pending": {"type": "integer"},
                    "total_in_progress": {"type": "integer"},
                    "total_failed_30d": {"type": "integer"},
                    "total_succeeded_30d": {"type": "integer"},
                    "oldest_pending_age_seconds": {"type": ["number", "null"]}
                }
            }
        }
    },
    "ApprovalDefaults": {
        "type": "object",
        "properties": {
            "notifier": {"type": "string"},
            "default_channel": {"type": ["string", "null"]},
            "default_timeout_seconds": {"type": "integer"},
            "slack_configured": {"type": "boolean"},
            "teams_configured": {"type": "boolean"}
        }
    }
});
