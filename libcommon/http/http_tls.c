/*
 * http_tls.c - native TLS for the HTTP server: OpenSSL 3 through memory BIOs.
 *
 * libuv does all socket I/O. Received ciphertext is written into the connection's read BIO and
 * SSL_read() yields plaintext; plaintext answers go through SSL_write() and the write BIO is
 * drained into bytes for the connection's writer (send(), or uv_write() behind queued bytes).
 * Policy: TLS 1.2 minimum, server cipher preference, ECDHE with AEAD ciphers only for TLS 1.2
 * (TLS 1.3 suites are all AEAD), no compression, no renegotiation, no session tickets state on
 * disk.
 */
#include "http_internal.h"
#include "log.h"

#include <openssl/err.h>
#include <stdio.h>

struct http_tls {
    SSL *ssl;
    BIO *rbio; /* network → SSL */
    BIO *wbio; /* SSL → network */
};

static void tls_err(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, errlen, "%s %s: %s", what, file, reason);
    ERR_clear_error();
}

SSL_CTX *http_tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_err(err, errlen, "SSL_CTX_new", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") != 1) {
        tls_err(err, errlen, "cipher list", "");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_err(err, errlen, "TLS_CERT_FILE", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_err(err, errlen, "TLS_KEY_FILE", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_err(err, errlen, "TLS_KEY_FILE does not match TLS_CERT_FILE", key_file);
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct http_tls *http_tls_new(SSL_CTX *ctx)
{
    struct http_tls *t = xcalloc(1, sizeof *t);
    t->ssl = SSL_new(ctx);
    if (!t->ssl)
        msg_fatal("SSL_new failed");
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio)
        msg_fatal("BIO_new failed");
    BIO_set_mem_eof_return(t->rbio, -1);   /* empty read BIO = "want more", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* SSL owns both now */
    SSL_set_accept_state(t->ssl);
    return t;
}

void http_tls_free(struct http_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

static void drain_wbio(struct http_tls *t, struct buf *send)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
        buf_reserve(send, pending);
        int n = BIO_read(t->wbio, send->data + send->len, (int)pending);
        if (n <= 0)
            break;
        send->len += (size_t)n;
        send->data[send->len] = '\0';
    }
}

int http_tls_handshake_done(const struct http_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

int http_tls_feed(struct http_tls *t, const char *data, size_t len, struct buf *plain,
                  struct buf *send)
{
    if (len && BIO_write(t->rbio, data, (int)len) != (int)len)
        return -1;
    int rc = 0;
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            drain_wbio(t, send); /* an alert, or the next handshake flight */
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            ERR_clear_error();
            return -1;
        }
    }
    for (;;) {
        buf_reserve(plain, 16384);
        int n = SSL_read(t->ssl, plain->data + plain->len, 16384);
        if (n > 0) {
            plain->len += (size_t)n;
            plain->data[plain->len] = '\0';
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = 1;
            break;
        }
        ERR_clear_error();
        rc = -1;
        break;
    }
    drain_wbio(t, send);
    return rc;
}

int http_tls_encrypt(struct http_tls *t, const char *data, size_t len, struct buf *send)
{
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int n = SSL_write(t->ssl, data, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    drain_wbio(t, send);
    return 0;
}

void http_tls_close_notify(struct http_tls *t, struct buf *send)
{
    if (SSL_is_init_finished(t->ssl)) {
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    drain_wbio(t, send);
}
