/*
 * scopes.h - the API-key scopes, the one list the REST API and the command line both check.
 *
 * A key carries a set of these; a route names the one it needs (services/intake/routes.c),
 * and "admin" satisfies every route. Adding a scope is adding it to SCOPES in scopes.c.
 */
#ifndef LIBCOMMON_SCOPES_H
#define LIBCOMMON_SCOPES_H

/* Every known scope, NULL-terminated, in the order the documentation lists them. */
extern const char *const SCOPES[];

/* 1 if s is exactly one of SCOPES (case-sensitive), 0 otherwise (NULL included). */
int scope_known(const char *s);

#endif
