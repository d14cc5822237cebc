/*
 * secrets_aws.h - AWS Secrets Manager secrets backend (GetSecretValue, SigV4).
 *
 * Reads from env (the real process environment): AWS_SECRETS_MANAGER_SECRET_NAME, AWS_REGION
 * (or AWS_DEFAULT_REGION), AWS_SECRETS_MANAGER_ENDPOINT (default
 * https://secretsmanager.<region>.amazonaws.com). Credentials, first source present wins:
 * AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); the container endpoint
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN
 * or _TOKEN_FILE); the EC2 instance metadata service, IMDSv2 only
 * (AWS_EC2_METADATA_SERVICE_ENDPOINT, default http://169.254.169.254; skipped when
 * AWS_EC2_METADATA_DISABLED=true). The secret's SecretString must be a JSON object; its keys
 * are setting names, string values are taken as is, numbers and booleans as their JSON text,
 * null members are skipped, nested objects/arrays are an error.
 */
#ifndef CALSETA_SECRETS_AWS_H
#define CALSETA_SECRETS_AWS_H

#include <stddef.h>

struct settings;

/* 0 on success; -1 with a reason (never a secret value) in err. */
int secrets_aws_load(const struct settings *env, struct settings *out, char *err, size_t errlen);

#endif
