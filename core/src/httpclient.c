/* HTTP client: the only file that includes <curl/curl.h>.
 *
 * Data flow: one libcurl easy handle per client, reused between calls so that connections stay
 * alive. A call resets the handle's options (not its connection cache), sets method, headers,
 * body and timeout, and collects the response body into a bounded buffer: the write callback
 * refuses the bytes beyond max_response, which aborts the transfer (SB_E_TOO_LARGE). The header
 * callback picks up Retry-After. libcurl codes become sb_result_t here and nowhere else. */
#include "sb/httpclient.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "sb/log.h"

#define MOD "httpclient"

struct sb_http_client {
    CURL *curl;
};

typedef struct xfer {
    sb_buf_t *body;
    size_t max;
    bool too_large;
    long retry_after_s;
} xfer_t;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

sb_result_t sb_http_client_create(sb_http_client_t **out)
{
    if (out == NULL) return SB_E_INVALID;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) return SB_E_INTERNAL;
    CURL *curl = curl_easy_init();
    if (curl == NULL) return SB_E_INTERNAL;
    sb_http_client_t *c = sb_xcalloc(1, sizeof *c);
    c->curl = curl;
    *out = c;
    return SB_OK;
}

void sb_http_client_destroy(sb_http_client_t *c)
{
    if (c == NULL) return;
    curl_easy_cleanup(c->curl);
    free(c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (n > x->max || x->body->len > x->max - n) {
        x->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    sb_buf_append(x->body, ptr, n);
    return n;
}

/* Retry-After: either delta-seconds or an HTTP date. */
static long parse_retry_after(const char *v, size_t n)
{
    char buf[64];
    while (n > 0 && isspace((unsigned char)*v))
        v++, n--;
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    bool digits = true;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i])) digits = false;
    if (digits) {
        if (n > 9) return 999999999L;
        return strtol(buf, NULL, 10);
    }
    time_t when = curl_getdate(buf, NULL);
    if (when < 0) return -1;
    time_t now = time(NULL);
    return when > now ? (long)(when - now) : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        x->retry_after_s = -1; /* a new response (after 100 Continue): forget the old one */
    } else if (n > sizeof name - 1 && strncasecmp(ptr, name, sizeof name - 1) == 0) {
        x->retry_after_s = parse_retry_after(ptr + sizeof name - 1, n - (sizeof name - 1));
    }
    return n;
}

sb_result_t sb_http_client_do(sb_http_client_t *c, const char *method, const char *url,
                              const char *const *headers, const void *body, size_t len,
                              long timeout_ms, size_t max_response, sb_http_client_response_t *out)
{
    sb_result_t rc = SB_E_UNAVAILABLE;
    struct curl_slist *hl = NULL;
    sb_buf_t buf = {0};
    xfer_t x = {.body = &buf, .max = max_response, .retry_after_s = -1};

    if (c == NULL || method == NULL || url == NULL || out == NULL || (body == NULL && len > 0))
        return SB_E_INVALID;
    out->status = 0;
    out->body = (sb_buf_t){0};
    out->retry_after_s = -1;

    CURL *h = c->curl;
    curl_easy_reset(h); /* options only: the connection cache survives */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (timeout_ms > 0) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    }
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? (const char *)body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *nl = curl_slist_append(hl, headers[i]);
        if (nl == NULL) {
            rc = SB_E_INTERNAL;
            goto done;
        }
        hl = nl;
    }
    /* No "Expect: 100-continue" round trip: our bodies are small and servers answer at once. */
    struct curl_slist *nl = curl_slist_append(hl, "Expect:");
    if (nl == NULL) {
        rc = SB_E_INTERNAL;
        goto done;
    }
    hl = nl;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);

    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OK) {
        out->status = status;
        out->retry_after_s = x.retry_after_s;
        if (buf.len > 0) {
            sb_buf_append(&buf, "", 1);
            buf.len--;
        }
        out->body = buf;
        buf = (sb_buf_t){0};
        rc = SB_OK;
    } else if (x.too_large) {
        SB_DEBUG(MOD, "response too large max=%zu", max_response);
        rc = SB_E_TOO_LARGE;
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        SB_DEBUG(MOD, "request timed out timeout_ms=%ld", timeout_ms);
        rc = SB_E_TIMEOUT;
    } else {
        SB_DEBUG(MOD, "request failed curl=\"%s\"", curl_easy_strerror(cc));
        rc = cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ? SB_E_INVALID
                                                                           : SB_E_UNAVAILABLE;
    }
done:
    curl_slist_free_all(hl);
    sb_buf_free(&buf);
    return rc;
}
