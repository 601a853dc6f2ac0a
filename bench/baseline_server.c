/* The ceiling for the ingress benchmark: the smallest useful HTTP server on the same stack the
 * router uses (one libuv loop + libhttp-parser, keep-alive), which reads each request whole and
 * answers 200 "ok" without doing anything else. bench/ingress measures the router against it in
 * the same run. Deliberately independent of core/: it is the baseline, not the product.
 * Usage: sb-bench-baseline PORT */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct conn {
    uv_tcp_t tcp;
    http_parser parser;
    int keep_alive;
} conn_t;

static http_parser_settings settings;
static const char response_ka[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
static const char response_close[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                     "Content-Length: 2\r\nConnection: close\r\n\r\nok";

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_write(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    c->keep_alive = http_should_keep_alive(p);
    uv_write_t *w = malloc(sizeof *w);
    if (!w) abort();
    uv_buf_t b = c->keep_alive ? uv_buf_init((char *)response_ka, sizeof response_ka - 1)
                               : uv_buf_init((char *)response_close, sizeof response_close - 1);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char slab[65536];
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    size_t parsed = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
    if (parsed != (size_t)n || !c->keep_alive) uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) abort();
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    c->keep_alive = 1;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sb-bench-baseline PORT\n");
        return 2;
    }
    settings.on_message_complete = on_message_complete;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, 1024, on_connection) != 0) {
        fprintf(stderr, "sb-bench-baseline: cannot listen on %s\n", argv[1]);
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
