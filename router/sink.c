/* The built-in channel sink (see sink.h): a ring of the last requests, fed by the /_sink/
 * prefix route and listed by GET /_sink. Everything runs on the loop thread, so no lock. */
#include "sink.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"
#include "sb/util.h"

#define MOD "sink"

typedef struct sink_req {
    char method[16];
    char *path;
    char *body;
    int64_t at_ms;
} sink_req_t;

struct sb_router_sink {
    sink_req_t *ring;
    size_t keep;
    size_t next;  /* slot of the next request */
    size_t count; /* requests kept */
    unsigned long long seq;
};

sb_router_sink_t *sb_router_sink_create(size_t keep)
{
    sb_router_sink_t *s = sb_xcalloc(1, sizeof *s);
    s->keep = keep;
    s->ring = sb_xcalloc(keep ? keep : 1, sizeof *s->ring);
    return s;
}

/* The path for the log line with credentials masked: Telegram's Bot API puts the bot token in
 * the path ("/bot<id>:<secret>/sendMessage"), and tokens are never logged. */
static void log_path(const char *path, char *out, size_t n)
{
    const char *bot = strstr(path, "/bot");
    const char *end = bot ? strchr(bot + 4, '/') : NULL;
    if (bot && !end) end = bot + strlen(bot);
    if (!bot || !memchr(bot, ':', (size_t)(end - bot))) {
        snprintf(out, n, "%s", path);
        return;
    }
    snprintf(out, n, "%.*s/bot(hidden)%s", (int)(bot - path), path, end);
}

static void on_request(sb_http_request_t *req)
{
    sb_router_sink_t *s = req->route_ctx;
    s->seq++;
    if (s->keep > 0) {
        sink_req_t *r = &s->ring[s->next];
        free(r->path);
        free(r->body);
        snprintf(r->method, sizeof r->method, "%s", req->method);
        r->path = sb_xstrdup(req->target);
        r->body = sb_xstrndup((const char *)req->body, req->body_len);
        r->at_ms = sb_now_ms();
        s->next = (s->next + 1) % s->keep;
        if (s->count < s->keep) s->count++;
    }
    char path[256];
    log_path(req->path, path, sizeof path);
    SB_INFO(MOD, "request method=%s path=%s bytes=%zu", req->method, path, req->body_len);
    char body[96];
    snprintf(body, sizeof body, "{\"messages\":[{\"id\":\"wamid.sink%llu\"}]}", s->seq);
    sb_http_respond_json(req, 200, body);
}

static void on_list(sb_http_request_t *req)
{
    sb_router_sink_t *s = req->route_ctx;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "requests");
    /* Oldest first. */
    for (size_t i = 0; i < s->count; i++) {
        size_t idx = (s->next + s->keep - s->count + i) % s->keep;
        const sink_req_t *r = &s->ring[idx];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", r->method);
        cJSON_AddStringToObject(o, "path", r->path);
        cJSON_AddNumberToObject(o, "at_ms", (double)r->at_ms);
        cJSON *parsed = cJSON_Parse(r->body);
        if (parsed)
            cJSON_AddItemToObject(o, "json", parsed);
        else
            cJSON_AddStringToObject(o, "body", r->body);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(root, "total", (double)s->seq);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    sb_http_respond_json(req, 200, json ? json : "{}");
    free(json);
}

void sb_router_sink_add_routes(sb_router_sink_t *sink, sb_http_server_t *srv, size_t max_body)
{
    sb_http_server_route(srv, "GET", "/_sink", 0, on_list, sink);
    sb_http_server_route(srv, NULL, "/_sink/", max_body, on_request, sink);
}

void sb_router_sink_destroy(sb_router_sink_t *sink)
{
    if (!sink) return;
    for (size_t i = 0; i < sink->keep; i++) {
        free(sink->ring[i].path);
        free(sink->ring[i].body);
    }
    free(sink->ring);
    free(sink);
}
