#ifndef PARLEY_SMTP_H
#define PARLEY_SMTP_H
#include <stddef.h>

/// Sends one message over SMTP with libcurl (blocking: call it off the event
/// loops). `url` is smtp://host:port or smtps://host:port. With
/// `require_tls`, an smtp:// server must accept STARTTLS or nothing is sent
/// (CURLUSESSL_ALL); without it the session stays plaintext (a local catcher).
/// `user`/`password` may be NULL.
/// Returns 0 on success, else the CURLcode, with a message in `error`
/// (at least 256 bytes).
int parley_smtp_send(const char *url, const char *user, const char *password,
                     const char *from, const char *const *recipients, size_t recipient_count,
                     const char *data, size_t length, long timeout_seconds, int require_tls, char *error);

#endif
