#include "parley_smtp.h"
#include <curl/curl.h>
#include <string.h>
#include <stdio.h>

struct upload {
    const char *data;
    size_t length;
    size_t offset;
};

static size_t read_callback(char *buffer, size_t size, size_t count, void *userdata) {
    struct upload *upload = (struct upload *)userdata;
    size_t room = size * count;
    size_t left = upload->length - upload->offset;
    size_t n = left < room ? left : room;
    memcpy(buffer, upload->data + upload->offset, n);
    upload->offset += n;
    return n;
}

int parley_smtp_send(const char *url, const char *user, const char *password,
                     const char *from, const char *const *recipients, size_t recipient_count,
                     const char *data, size_t length, long timeout_seconds, int require_tls, char *error) {
    error[0] = 0;
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(error, 256, "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *rcpt = NULL;
    for (size_t i = 0; i < recipient_count; i++) rcpt = curl_slist_append(rcpt, recipients[i]);
    struct upload upload = { data, length, 0 };
    char curl_error[CURL_ERROR_SIZE] = {0};

    curl_easy_setopt(curl, CURLOPT_URL, url);
    if (user) curl_easy_setopt(curl, CURLOPT_USERNAME, user);
    if (password) curl_easy_setopt(curl, CURLOPT_PASSWORD, password);
    curl_easy_setopt(curl, CURLOPT_USE_SSL, require_tls ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_NONE);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_callback);
    curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_seconds);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeout_seconds < 10 ? timeout_seconds : 10L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);

    CURLcode result = curl_easy_perform(curl);
    if (result != CURLE_OK) {
        long response = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response);
        snprintf(error, 256, "%s (SMTP %ld): %s", curl_easy_strerror(result), response, curl_error);
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    return (int)result;
}
