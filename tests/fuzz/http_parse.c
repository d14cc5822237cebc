/*
 * http_parse.c - libFuzzer target for HTTP request framing and header parsing.
 *
 * Runs arbitrary bytes through the server's own connection code (llhttp in strict mode, the
 * header/body limits, routing, CORS, the answers) on a socket-less connection:
 * http_conn_fuzz_feed() in libcommon/http/http_server.c. The first byte picks CORS and HSTS settings
 * and how the rest is split into reads. The harness itself aborts when an answer lacks its
 * request id or security headers. Seeds: corpus/http_parse/.
 */
#include "http_internal.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz", 0, LOG_ERROR);
    http_conn_fuzz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_conn_fuzz_feed(data, size);
    return 0;
}
