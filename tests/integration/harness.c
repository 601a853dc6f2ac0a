/* Integration test harness (contract: harness.h).
 *
 * Flow: sb_harness_start_nats makes a temporary root, starts a real nats-server with JetStream
 * on a free loopback port and its store under the root, waits until it accepts TCP, and
 * connects h->bus (streams created with the default limits, so services agree with it).
 * sb_harness_write_config writes one YAML file for every service: NATS URL, data_dir, a free
 * router port, freshly generated keys, merged with the test's extra YAML. sb_harness_spawn
 * fork/execs the real binaries from SB_BIN_DIR with stdout+stderr in <root>/<binary>.log.
 * The sink is a core sb_http_server on its own thread that records every request.
 * sb_harness_stop terminates children (SIGTERM, 5 s grace, SIGKILL), then nats-server, and
 * removes the root unless SB_KEEP_TEST_DIR is set. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb/config.h"
#include "sb/http.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/util.h"

#define MOD "harness"
#define NATS_START_MS 15000
#define KILL_GRACE_MS 5000

extern char **environ;

/* Configuration keys the harness sets in the file: the same settings in the environment of
 * the test runner would silently win over the file in the children, so they are removed. */
static const char *const stripped_env[] = {
    "SB_CONFIG",
    "SB_NATS_URL",
    "SB_DATA_DIR",
    "SB_HTTP_LISTEN",
    "SB_LOG_LEVEL",
    "SB_ROUTER_HTTP_LISTEN",
    "SB_KEYS_ID_SECRET",
    "SB_KEYS_MASTER_KEY",
    "SB_KEYS_CONTACT_PUBLIC_KEY",
    "SB_KEYS_CONTACT_SECRET_KEY",
    "SB_KEYS_RECIPIENT_PUBLIC_KEY",
    "SB_KEYS_RECIPIENT_SECRET_KEY",
    NULL,
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* --- processes ---------------------------------------------------------------------------- */

static bool env_is_stripped(const char *kv)
{
    for (size_t i = 0; stripped_env[i] != NULL; i++) {
        size_t n = strlen(stripped_env[i]);
        if (strncmp(kv, stripped_env[i], n) == 0 && kv[n] == '=') return true;
    }
    return false;
}

/* fork + exec path argv with stdout/stderr appended to logpath. Everything the child needs
 * is prepared before fork: after it, only async-signal-safe calls (nats.c has threads). */
static pid_t spawn_logged(const char *path, char *const argv[], const char *logpath)
{
    size_t nenv = 0;
    for (char **e = environ; *e != NULL; e++)
        nenv++;
    char **envp = sb_xcalloc(nenv + 1, sizeof *envp);
    size_t k = 0;
    for (char **e = environ; *e != NULL; e++)
        if (!env_is_stripped(*e)) envp[k++] = *e;
    envp[k] = NULL;

    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "harness: cannot open %s: %s\n", logpath, strerror(errno));
        free(envp);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* Die with the test: no orphaned servers when a test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execve(path, argv, envp);
        _exit(127);
    }
    close(fd);
    free(envp);
    if (pid < 0) fprintf(stderr, "harness: fork failed: %s\n", strerror(errno));
    return pid;
}

/* SIGTERM, wait up to the grace, then SIGKILL. */
static void terminate(pid_t pid)
{
    if (pid <= 0) return;
    int status;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < KILL_GRACE_MS; waited += 20) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return;
        sleep_ms(20);
    }
    fprintf(stderr, "harness: pid %d ignored SIGTERM for %d ms, killing\n", (int)pid,
            KILL_GRACE_MS);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

static bool find_nats_server(char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (path != NULL) {
        char *dup = sb_xstrdup(path);
        char *save = NULL;
        for (char *d = strtok_r(dup, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
            snprintf(out, n, "%s/nats-server", d);
            if (access(out, X_OK) == 0) {
                free(dup);
                return true;
            }
        }
        free(dup);
    }
    const char *fallbacks[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                               "/usr/local/bin/nats-server", NULL};
    for (size_t i = 0; fallbacks[i] != NULL; i++) {
        if (access(fallbacks[i], X_OK) == 0) {
            snprintf(out, n, "%s", fallbacks[i]);
            return true;
        }
    }
    return false;
}

int sb_harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static bool tcp_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* --- nats-server -------------------------------------------------------------------------- */

static sb_result_t launch_nats(sb_harness_t *h)
{
    char bin[PATH_MAX], store[PATH_MAX + 8], logpath[PATH_MAX + 16], port[16];
    if (!find_nats_server(bin, sizeof bin)) {
        fprintf(stderr, "harness: nats-server not found on PATH, /usr/sbin or /usr/bin\n");
        return SB_E_NOT_FOUND;
    }
    snprintf(store, sizeof store, "%s/nats", h->dir);
    snprintf(logpath, sizeof logpath, "%s/nats-server.log", h->dir);
    snprintf(port, sizeof port, "%d", h->nats_port);
    char *const argv[] = {bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", store, NULL};
    h->nats_pid = spawn_logged(bin, argv, logpath);
    if (h->nats_pid < 0) return SB_E_IO;
    for (int waited = 0; waited < NATS_START_MS; waited += 20) {
        if (tcp_accepts(h->nats_port)) return SB_OK;
        int status;
        if (waitpid(h->nats_pid, &status, WNOHANG) == h->nats_pid) {
            fprintf(stderr, "harness: nats-server exited at start (see %s)\n", logpath);
            h->nats_pid = 0;
            return SB_E_UNAVAILABLE;
        }
        sleep_ms(20);
    }
    fprintf(stderr, "harness: nats-server did not accept connections in %d ms\n", NATS_START_MS);
    return SB_E_TIMEOUT;
}

sb_result_t sb_harness_start_nats(sb_harness_t *h)
{
    sb_config_t cfg;
    char err[256];
    sb_result_t rc;

    memset(h, 0, sizeof *h);
    if (sb_seal_init() != SB_OK) return SB_E_INTERNAL;
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/sb-it-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(h->dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp failed: %s\n", strerror(errno));
        return SB_E_IO;
    }
    int w1 = snprintf(h->data_dir, sizeof h->data_dir, "%s/data", h->dir);
    int w2 = snprintf(h->config_path, sizeof h->config_path, "%s/switchboard.yaml", h->dir);
    if (w1 < 0 || (size_t)w1 >= sizeof h->data_dir || w2 < 0 || (size_t)w2 >= sizeof h->config_path)
        return SB_E_TOO_LARGE;
    if (mkdir(h->data_dir, 0700) != 0) return SB_E_IO;

    h->nats_port = sb_harness_free_port();
    if (h->nats_port <= 0) return SB_E_IO;
    snprintf(h->nats_url, sizeof h->nats_url, "nats://127.0.0.1:%d", h->nats_port);
    rc = launch_nats(h);
    if (rc != SB_OK) return rc;

    /* The defaults (what the services use) so that both create identical streams. */
    rc = sb_config_load(&cfg, NULL, err, sizeof err);
    if (rc != SB_OK) {
        fprintf(stderr, "harness: default config: %s\n", err);
        return rc;
    }
    sb_config_nats_t ncfg = cfg.nats;
    ncfg.url = h->nats_url;
    rc = sb_bus_connect(&h->bus, &ncfg, "harness", true);
    sb_config_free(&cfg);
    if (rc != SB_OK) return rc;
    rc = SB_E_UNAVAILABLE;
    for (int waited = 0; waited < NATS_START_MS && rc != SB_OK; waited += 100) {
        rc = sb_bus_ensure_streams(h->bus);
        if (rc != SB_OK) sleep_ms(100);
    }
    return rc;
}

void sb_harness_stop_nats(sb_harness_t *h)
{
    terminate(h->nats_pid);
    h->nats_pid = 0;
}

sb_result_t sb_harness_restart_nats(sb_harness_t *h)
{
    if (h->nats_pid > 0) return SB_E_EXISTS;
    /* The port was ours a moment ago; the server sets SO_REUSEADDR, so TIME_WAIT is fine. */
    return launch_nats(h);
}

/* --- configuration ------------------------------------------------------------------------ */

typedef struct kv {
    const char *key;
    char value[128];
} kv_t;

/* One top-level block of YAML text: its first line and the lines under it. */
typedef struct block {
    char key[64];
    const char *start; /* the block's first line */
    const char *body;  /* the line after the first */
    const char *end;
    bool used;
} block_t;

#define MAX_BLOCKS 64

static size_t split_blocks(const char *y, block_t *b, size_t max)
{
    size_t n = 0;
    for (const char *p = y; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        const char *next = eol != NULL ? eol + 1 : p + strlen(p);
        bool top = *p != ' ' && *p != '\t' && *p != '#' && *p != '\n' && *p != '\r' && *p != '-';
        const char *colon = top ? memchr(p, ':', (size_t)(next - p)) : NULL;
        if (colon != NULL && n < max) {
            if (n > 0) b[n - 1].end = p;
            size_t kl = (size_t)(colon - p);
            if (kl >= sizeof b[n].key) kl = sizeof b[n].key - 1;
            memcpy(b[n].key, p, kl);
            b[n].key[kl] = '\0';
            b[n].start = p;
            b[n].body = next;
            b[n].used = false;
            n++;
        }
        p = next;
    }
    if (n > 0) b[n - 1].end = y + strlen(y);
    return n;
}

static block_t *find_block(block_t *b, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b[i].key, key) == 0) return &b[i];
    return NULL;
}

/* True when the block's child lines set key (at their first indentation level). */
static bool block_sets(const block_t *b, const char *key)
{
    size_t indent = 0;
    size_t klen = strlen(key);
    for (const char *p = b->body; p < b->end;) {
        const char *eol = memchr(p, '\n', (size_t)(b->end - p));
        const char *next = eol != NULL ? eol + 1 : b->end;
        size_t sp = 0;
        while (p + sp < next && p[sp] == ' ')
            sp++;
        if (p + sp < next && p[sp] != '\n' && p[sp] != '#') {
            if (indent == 0) indent = sp;
            if (sp == indent && strncmp(p + sp, key, klen) == 0 && p[sp + klen] == ':') return true;
        }
        p = next;
    }
    return false;
}

/* Writes "name:\n" with our children (those the block does not set) and the block's own. */
static void emit_section(FILE *f, const char *name, const kv_t *kvs, size_t n, block_t *b)
{
    if (b != NULL) {
        /* A flow-style or scalar value on the header line cannot be merged: theirs wins. */
        const char *colon = strchr(b->start, ':');
        const char *after = colon + 1;
        while (*after == ' ')
            after++;
        if (*after != '\n' && *after != '\0' && *after != '#') return;
        b->used = true;
    }
    fprintf(f, "%s:\n", name);
    for (size_t i = 0; i < n; i++)
        if (b == NULL || !block_sets(b, kvs[i].key))
            fprintf(f, "  %s: %s\n", kvs[i].key, kvs[i].value);
    if (b != NULL) {
        fwrite(b->body, 1, (size_t)(b->end - b->body), f);
        if (b->end > b->body && b->end[-1] != '\n') fputc('\n', f);
    }
}

static void key_b64(char *out, size_t n, const uint8_t *key)
{
    char b64[64];
    sb_seal_base64_encode(b64, key, SB_SEAL_KEY_BYTES);
    snprintf(out, n, "\"%s\"", b64);
}

sb_result_t sb_harness_write_config(sb_harness_t *h, const char *extra_yaml)
{
    block_t blocks[MAX_BLOCKS];
    size_t nb = split_blocks(extra_yaml != NULL ? extra_yaml : "", blocks, MAX_BLOCKS);

    sb_seal_box_keypair(h->contact_pk, h->contact_sk);
    sb_seal_box_keypair(h->recipient_pk, h->recipient_sk);
    sb_seal_random(h->id_secret, sizeof h->id_secret);
    sb_seal_random(h->master_key, sizeof h->master_key);
    h->router_port = sb_harness_free_port();
    if (h->router_port <= 0) return SB_E_IO;
    snprintf(h->router_url, sizeof h->router_url, "http://127.0.0.1:%d", h->router_port);

    kv_t nats[] = {{.key = "url"}};
    snprintf(nats[0].value, sizeof nats[0].value, "\"%s\"", h->nats_url);
    kv_t router[] = {{.key = "http_listen"}};
    snprintf(router[0].value, sizeof router[0].value, "\"127.0.0.1:%d\"", h->router_port);
    kv_t keys[] = {{.key = "id_secret"},
                   {.key = "contact_public_key"},
                   {.key = "contact_secret_key"},
                   {.key = "recipient_public_key"},
                   {.key = "recipient_secret_key"},
                   {.key = "master_key"},
                   {.key = "master_key_id"}};
    key_b64(keys[0].value, sizeof keys[0].value, h->id_secret);
    key_b64(keys[1].value, sizeof keys[1].value, h->contact_pk);
    key_b64(keys[2].value, sizeof keys[2].value, h->contact_sk);
    key_b64(keys[3].value, sizeof keys[3].value, h->recipient_pk);
    key_b64(keys[4].value, sizeof keys[4].value, h->recipient_sk);
    key_b64(keys[5].value, sizeof keys[5].value, h->master_key);
    snprintf(keys[6].value, sizeof keys[6].value, "1");

    FILE *f = fopen(h->config_path, "w");
    if (f == NULL) return SB_E_IO;
    fchmod(fileno(f), 0600);
    fprintf(f, "# written by the integration harness\n");
    block_t *b = find_block(blocks, nb, "log_level");
    if (b == NULL) fprintf(f, "log_level: debug\n");
    b = find_block(blocks, nb, "data_dir");
    if (b == NULL) fprintf(f, "data_dir: \"%s\"\n", h->data_dir);
    emit_section(f, "nats", nats, 1, find_block(blocks, nb, "nats"));
    emit_section(f, "router", router, 1, find_block(blocks, nb, "router"));
    emit_section(f, "keys", keys, sizeof keys / sizeof keys[0], find_block(blocks, nb, "keys"));
    for (size_t i = 0; i < nb; i++) {
        if (blocks[i].used) continue;
        fwrite(blocks[i].start, 1, (size_t)(blocks[i].end - blocks[i].start), f);
        if (blocks[i].end > blocks[i].start && blocks[i].end[-1] != '\n') fputc('\n', f);
    }
    bool ok = ferror(f) == 0;
    if (fclose(f) != 0) ok = false;
    return ok ? SB_OK : SB_E_IO;
}

/* --- services ----------------------------------------------------------------------------- */

pid_t sb_harness_spawn(sb_harness_t *h, const char *binary, const char *const *args)
{
    const char *bindir = getenv("SB_BIN_DIR");
    if (bindir == NULL || binary == NULL || h->nprocs >= SB_HARNESS_MAX_PROCS) {
        fprintf(stderr, "harness: cannot spawn %s (SB_BIN_DIR unset or too many children)\n",
                binary != NULL ? binary : "(null)");
        return -1;
    }
    char path[PATH_MAX], logpath[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", bindir, binary);
    snprintf(logpath, sizeof logpath, "%s/%s.log", h->dir, binary);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "harness: %s is not built\n", path);
        return -1;
    }
    size_t nargs = 0;
    while (args != NULL && args[nargs] != NULL)
        nargs++;
    char **argv = sb_xcalloc(nargs + 4, sizeof *argv);
    argv[0] = path;
    argv[1] = "--config";
    argv[2] = h->config_path;
    for (size_t i = 0; i < nargs; i++)
        argv[3 + i] = (char *)args[i];
    pid_t pid = spawn_logged(path, argv, logpath);
    free(argv);
    if (pid > 0) h->procs[h->nprocs++] = pid;
    return pid;
}

sb_result_t sb_harness_wait_http(const char *url, int timeout_ms)
{
    sb_http_client_t *c = NULL;
    if (sb_http_client_create(&c) != SB_OK) return SB_E_INTERNAL;
    sb_result_t rc = SB_E_TIMEOUT;
    uint64_t deadline = sb_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    do {
        sb_http_client_response_t resp;
        if (sb_http_client_do(c, "GET", url, NULL, NULL, 0, 1000, 65536, &resp) == SB_OK) {
            long status = resp.status;
            sb_buf_free(&resp.body);
            if (status == 200) {
                rc = SB_OK;
                break;
            }
        }
        sleep_ms(100);
    } while (sb_mono_ns() < deadline);
    sb_http_client_destroy(c);
    return rc;
}

void sb_harness_kill(sb_harness_t *h, pid_t pid)
{
    terminate(pid);
    for (int i = 0; i < h->nprocs; i++) {
        if (h->procs[i] == pid) {
            h->procs[i] = h->procs[--h->nprocs];
            break;
        }
    }
}

void sb_harness_dump_log(const sb_harness_t *h, const char *name, size_t max_bytes)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s.log", h->dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > (long)max_bytes)
            fseek(f, size - (long)max_bytes, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    fprintf(stderr, "----- %s (tail) -----\n", path);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "----- end of %s -----\n", name);
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void sb_harness_stop(sb_harness_t *h)
{
    for (int i = h->nprocs - 1; i >= 0; i--)
        terminate(h->procs[i]);
    h->nprocs = 0;
    sb_bus_destroy(h->bus);
    h->bus = NULL;
    sb_harness_stop_nats(h);
    if (h->dir[0] == '\0') return;
    const char *keep = getenv("SB_KEEP_TEST_DIR");
    if (keep != NULL && keep[0] != '\0' && strcmp(keep, "0") != 0) {
        fprintf(stderr, "harness: kept %s\n", h->dir);
    } else {
        nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    h->dir[0] = '\0';
}

/* --- streams ------------------------------------------------------------------------------ */

typedef struct reader {
    sb_harness_msg_fn fn;
    void *ctx;
} reader_t;

static sb_result_t on_read_msg(void *ctx, const sb_bus_msg_t *m)
{
    reader_t *r = ctx;
    if (r->fn != NULL) r->fn(r->ctx, m->subject, m->data, m->len);
    return SB_OK;
}

sb_result_t sb_harness_read_stream(sb_harness_t *h, const char *stream, const char *filter,
                                   sb_harness_msg_fn fn, void *ctx, size_t *count)
{
    sb_bus_pull_t *pull = NULL;
    uint64_t pending = 0;
    size_t got = 0;
    reader_t r = {fn, ctx};

    sb_result_t rc = sb_bus_pull_create_ephemeral(h->bus, stream, filter, &pull);
    if (rc != SB_OK) return rc;
    rc = sb_bus_pull_pending(pull, &pending);
    while (rc == SB_OK && got < pending) {
        int n = 0;
        size_t want = pending - got;
        rc = sb_bus_pull_fetch(pull, want > 256 ? 256 : (int)want, 2000, on_read_msg, &r, &n);
        if (rc == SB_OK && n == 0) break; /* pending changed under us (expired): done */
        got += (size_t)n;
    }
    sb_bus_pull_destroy(pull);
    if (rc == SB_OK && count != NULL) *count = got;
    return rc;
}

size_t sb_harness_wait_stream(sb_harness_t *h, const char *stream, const char *filter, size_t count,
                              int timeout_ms)
{
    uint64_t n = 0;
    uint64_t deadline = sb_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint64_t now_n = 0;
        if (sb_bus_stream_count(h->bus, stream, filter, &now_n) == SB_OK) n = now_n;
        if (n >= count || sb_mono_ns() >= deadline) break;
        sleep_ms(50);
    }
    return (size_t)n;
}

/* --- the sink ----------------------------------------------------------------------------- */

struct sb_sink {
    pthread_t thread;
    sb_http_server_t *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sb_sink_request_t **reqs; /* each allocated once: pointers stay valid as the list grows */
    size_t n, cap;
    int fail_status;
    int fail_n;
    bool started;
    sb_result_t start_rc;
    int port;
};

#define SINK_MAX_BODY (16u * 1024 * 1024)

static void on_sink_request(sb_http_request_t *req)
{
    sb_sink_t *s = req->route_ctx;
    sb_sink_request_t *r = sb_xcalloc(1, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", req->method);
    r->path = sb_xstrdup(req->target);
    r->body = sb_xstrndup((const char *)req->body, req->body_len);
    r->body_len = req->body_len;
    sb_buf_t hb = {0};
    for (size_t i = 0; i < req->nheaders; i++)
        sb_buf_appendf(&hb, "%s: %s\n", req->headers[i].name, req->headers[i].value);
    sb_buf_append(&hb, "", 1);
    r->headers = hb.data;

    pthread_mutex_lock(&s->mu);
    int status = 200;
    if (s->fail_n > 0) {
        s->fail_n--;
        status = s->fail_status;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->reqs = sb_xrealloc(s->reqs, s->cap * sizeof *s->reqs);
    }
    s->reqs[s->n++] = r;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sb_http_respond_json(req, status, "{}");
}

static void *sink_thread(void *arg)
{
    sb_sink_t *s = arg;
    sb_http_server_t *srv = NULL;
    sb_http_limits_t lim = {.max_header_bytes = 65536, .max_headers = 128};
    sb_result_t rc = sb_http_server_create(&srv, "127.0.0.1:0", &lim);
    if (rc == SB_OK) sb_http_server_route(srv, NULL, "/", SINK_MAX_BODY, on_sink_request, s);
    pthread_mutex_lock(&s->mu);
    s->srv = srv;
    s->start_rc = rc;
    s->port = rc == SB_OK ? sb_http_server_port(srv) : 0;
    s->started = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc == SB_OK && sb_http_server_run(srv) != SB_OK)
        fprintf(stderr, "harness: sink loop did not close cleanly\n");
    return NULL;
}

sb_result_t sb_sink_start(sb_sink_t **out, int *port)
{
    sb_sink_t *s = sb_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, sink_thread, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return SB_E_INTERNAL;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->started)
        pthread_cond_wait(&s->cv, &s->mu);
    sb_result_t rc = s->start_rc;
    pthread_mutex_unlock(&s->mu);
    if (rc != SB_OK) {
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    if (port != NULL) *port = s->port;
    *out = s;
    return SB_OK;
}

void sb_sink_fail_next(sb_sink_t *s, int status, int n)
{
    pthread_mutex_lock(&s->mu);
    s->fail_status = status;
    s->fail_n = n;
    pthread_mutex_unlock(&s->mu);
}

size_t sb_sink_wait(sb_sink_t *s, size_t count, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->n < count) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
    }
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

const sb_sink_request_t *sb_sink_get(sb_sink_t *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    const sb_sink_request_t *r = i < s->n ? s->reqs[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

void sb_sink_stop(sb_sink_t *s)
{
    if (s == NULL) return;
    sb_http_server_stop(s->srv);
    pthread_join(s->thread, NULL);
    sb_http_server_destroy(s->srv); /* the loop thread is gone: safe from here */
    for (size_t i = 0; i < s->n; i++) {
        free(s->reqs[i]->path);
        free(s->reqs[i]->body);
        free(s->reqs[i]->headers);
        free(s->reqs[i]);
    }
    free(s->reqs);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
