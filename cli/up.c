/* `switchboard up`: the whole stack on one machine, for `make run`. It prepares the data
 * directory, loads or creates the local key material (kept under <data_dir>/keys, mode 0600,
 * so the encrypted store stays readable across restarts), starts a nats-server with JetStream
 * under <data_dir>/nats, trains the demo model when it is missing or stale, starts the router,
 * classifier, escalation worker and responder, waits until the router is ready, prints the
 * URLs, and supervises: a service that dies is restarted; SIGINT/SIGTERM stops everything. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/seal.h"
#include "sb/service.h"
#include "sb/util.h"

#define MOD "up"

typedef struct child {
    const char *name; /* binary name, e.g. "switchboard-router" */
    pid_t pid;
    int restarts;
    int64_t started_ms;
} child_t;

static const char *const services[] = {"switchboard-router", "switchboard-classifier",
                                       "switchboard-escalation", "switchboard-responder"};
#define NSERVICES (sizeof services / sizeof services[0])

/* The key material a local stack needs, as (config env name, kind) pairs. */
static const struct {
    const char *env;
    const char *file_key;
} key_names[] = {
    {"SB_KEYS_ID_SECRET", "id_secret"},
    {"SB_KEYS_CONTACT_PUBLIC_KEY", "contact_public_key"},
    {"SB_KEYS_CONTACT_SECRET_KEY", "contact_secret_key"},
    {"SB_KEYS_RECIPIENT_PUBLIC_KEY", "recipient_public_key"},
    {"SB_KEYS_RECIPIENT_SECRET_KEY", "recipient_secret_key"},
    {"SB_KEYS_MASTER_KEY", "master_key"},
};
#define NKEYS (sizeof key_names / sizeof key_names[0])

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Loads <data_dir>/keys (NAME=base64 lines) or creates it with fresh keys, then exports each
 * key as its SB_KEYS_* environment variable unless the configuration already set it. */
static int prepare_keys(const sb_config_t *cfg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/keys", cfg->data_dir);
    char vals[NKEYS][64];
    memset(vals, 0, sizeof vals);

    FILE *f = fopen(path, "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            char *eq = strchr(line, '=');
            if (!eq) continue;
            *eq = '\0';
            char *v = eq + 1;
            v[strcspn(v, "\r\n")] = '\0';
            for (size_t i = 0; i < NKEYS; i++)
                if (strcmp(line, key_names[i].file_key) == 0 && strlen(v) < sizeof vals[i])
                    snprintf(vals[i], sizeof vals[i], "%s", v);
        }
        sb_seal_wipe(line, sizeof line);
        fclose(f);
    }
    bool missing = false;
    for (size_t i = 0; i < NKEYS; i++)
        missing |= vals[i][0] == '\0';
    if (missing) {
        uint8_t cpk[32], csk[32], rpk[32], rsk[32], id[32], mk[32];
        sb_seal_box_keypair(cpk, csk);
        sb_seal_box_keypair(rpk, rsk);
        sb_seal_keygen(id);
        sb_seal_keygen(mk);
        const uint8_t *raw[NKEYS] = {id, cpk, csk, rpk, rsk, mk};
        for (size_t i = 0; i < NKEYS; i++)
            sb_seal_base64_encode(vals[i], raw[i], 32);
        sb_seal_wipe(csk, sizeof csk);
        sb_seal_wipe(rsk, sizeof rsk);
        sb_seal_wipe(id, sizeof id);
        sb_seal_wipe(mk, sizeof mk);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) {
            SB_ERROR(MOD, "cannot write key file path=%s err=%s", path, strerror(errno));
            return -1;
        }
        for (size_t i = 0; i < NKEYS; i++)
            dprintf(fd, "%s=%s\n", key_names[i].file_key, vals[i]);
        close(fd);
        SB_INFO(MOD, "created local key material path=%s", path);
    }
    const char *cfg_vals[NKEYS] = {cfg->keys.id_secret,
                                   cfg->keys.contact_public_key,
                                   cfg->keys.contact_secret_key,
                                   cfg->keys.recipient_public_key,
                                   cfg->keys.recipient_secret_key,
                                   cfg->keys.master_key};
    for (size_t i = 0; i < NKEYS; i++)
        if (!cfg_vals[i] || !cfg_vals[i][0]) setenv(key_names[i].env, vals[i], 1);
    sb_seal_wipe(vals, sizeof vals);
    return 0;
}

static bool tcp_accepts(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return false;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static const char *find_program(const char *name, char *buf, size_t n)
{
    const char *dirs[] = {"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"};
    const char *path = getenv("PATH");
    if (path) {
        char *copy = sb_xstrdup(path);
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(buf, n, "%s/%s", d, name);
            if (access(buf, X_OK) == 0) {
                free(copy);
                return buf;
            }
        }
        free(copy);
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(buf, n, "%s/%s", dirs[i], name);
        if (access(buf, X_OK) == 0) return buf;
    }
    return NULL;
}

static pid_t spawn(const char *path, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execv(path, argv);
        fprintf(stderr, "up: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int run_and_wait(const char *path, char *const argv[])
{
    pid_t pid = spawn(path, argv);
    if (pid < 0) return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void self_dir(char *buf, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) {
        snprintf(buf, n, ".");
        return;
    }
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash) *slash = '\0';
}

static bool file_newer(const char *a, const char *b)
{
    struct stat sa, sb_;
    if (stat(a, &sa) != 0) return false;
    if (stat(b, &sb_) != 0) return true;
    return sa.st_mtime > sb_.st_mtime;
}

static void stop_children(child_t *kids, size_t n, pid_t nats)
{
    for (size_t i = 0; i < n; i++)
        if (kids[i].pid > 0) kill(kids[i].pid, SIGTERM);
    for (size_t i = 0; i < n; i++) {
        if (kids[i].pid <= 0) continue;
        for (int t = 0; t < 100; t++) {
            if (waitpid(kids[i].pid, NULL, WNOHANG) != 0) break;
            usleep(50 * 1000);
            if (t == 99) {
                kill(kids[i].pid, SIGKILL);
                waitpid(kids[i].pid, NULL, 0);
            }
        }
        kids[i].pid = 0;
    }
    if (nats > 0) {
        kill(nats, SIGTERM);
        waitpid(nats, NULL, 0);
    }
}

int sb_cli_up(int argc, char **argv)
{
    static const char usage[] =
        "switchboard up [--config FILE] [--demo-data FILE]\n"
        "  Starts nats-server (SB_NATS_LISTEN, default 127.0.0.1:4222) with JetStream under\n"
        "  SB_DATA_DIR (default ./var), trains the demo model, and runs every service.\n"
        "  Router on SB_HTTP_LISTEN (default 127.0.0.1:8080); SB_CHANNEL_API_BASE sends every\n"
        "  channel API call there (default: the router's built-in sink at /_sink).";
    const char *demo_data = "data/demo/train.tsv";
    /* Our own flag is removed before the service parser sees argv. */
    char *args[64];
    int nargs = 0;
    for (int i = 0; i < argc && nargs < 63; i++) {
        if (strcmp(argv[i], "--demo-data") == 0 && i + 1 < argc) {
            demo_data = argv[++i];
            continue;
        }
        args[nargs++] = argv[i];
    }
    args[nargs] = NULL;

    /* The local NATS address decides the URL every service uses. */
    const char *nats_listen = getenv("SB_NATS_LISTEN");
    if (!nats_listen || !*nats_listen) nats_listen = "127.0.0.1:4222";
    char nats_host[128];
    int nats_port = 0;
    if (sb_parse_hostport(nats_listen, nats_host, sizeof nats_host, &nats_port) != SB_OK) {
        fprintf(stderr, "up: SB_NATS_LISTEN: '%s' is not host:port\n", nats_listen);
        return 2;
    }
    char nats_url[192];
    snprintf(nats_url, sizeof nats_url, "nats://%s:%d", nats_host, nats_port);
    if (!getenv("SB_NATS_URL")) setenv("SB_NATS_URL", nats_url, 1);

    sb_service_t svc;
    int rc = sb_service_init(&svc, "up", nargs, args, NULL, usage);
    if (rc != 0) return rc < 0 ? 0 : rc;
    const sb_config_t *cfg = &svc.cfg;

    char path[PATH_MAX], nats_dir[PATH_MAX + 8], model_dir[PATH_MAX + 8];
    snprintf(nats_dir, sizeof nats_dir, "%s/nats", cfg->data_dir);
    snprintf(model_dir, sizeof model_dir, "%s/models", cfg->data_dir);
    if (mkdir_p(cfg->data_dir, 0700) != 0 || mkdir_p(nats_dir, 0700) != 0 ||
        mkdir_p(model_dir, 0700) != 0) {
        SB_ERROR(MOD, "cannot create data directory path=%s err=%s", cfg->data_dir,
                 strerror(errno));
        sb_service_close(&svc);
        return 1;
    }
    if (prepare_keys(cfg) != 0) {
        sb_service_close(&svc);
        return 1;
    }

    char bindir[PATH_MAX];
    self_dir(bindir, sizeof bindir);
    char self[PATH_MAX + 16];
    snprintf(self, sizeof self, "%s/switchboard", bindir);

    /* The demo model: trained when missing or older than its data. */
    char model[PATH_MAX + 32];
    if (cfg->classifier.model && cfg->classifier.model[0])
        snprintf(model, sizeof model, "%s", cfg->classifier.model);
    else
        snprintf(model, sizeof model, "%s/demo.model", model_dir);
    if (file_newer(demo_data, model)) {
        SB_INFO(MOD, "training demo model data=%s out=%s", demo_data, model);
        char *targv[] = {self, "train", "--data", (char *)demo_data, "--out", model, NULL};
        if (run_and_wait(self, targv) != 0) {
            SB_ERROR(MOD, "training the demo model failed data=%s", demo_data);
            sb_service_close(&svc);
            return 1;
        }
    }
    setenv("SB_CLASSIFIER_MODEL", model, 0);

    /* nats-server with JetStream under the data directory. */
    pid_t nats = 0;
    if (tcp_accepts(nats_host, nats_port)) {
        SB_INFO(MOD, "a NATS server already listens, using it url=%s", nats_url);
    } else {
        const char *ns = find_program("nats-server", path, sizeof path);
        if (!ns) {
            SB_ERROR(MOD, "nats-server not found; run scripts/install-deps");
            sb_service_close(&svc);
            return 1;
        }
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", nats_port);
        char nats_log[PATH_MAX + 32];
        snprintf(nats_log, sizeof nats_log, "%s/nats.log", nats_dir);
        char *nargv[] = {(char *)ns, "-a", nats_host,           "-p", port_s,   "-js", "-sd",
                         nats_dir,   "-n", "switchboard-local", "-l", nats_log, NULL};
        nats = spawn(ns, nargv);
        for (int i = 0; i < 100 && !tcp_accepts(nats_host, nats_port); i++)
            usleep(100 * 1000);
        if (!tcp_accepts(nats_host, nats_port)) {
            SB_ERROR(MOD, "nats-server did not start url=%s", nats_url);
            stop_children(NULL, 0, nats);
            sb_service_close(&svc);
            return 1;
        }
        SB_INFO(MOD, "nats-server started url=%s store=%s log=%s/nats.log", nats_url, nats_dir,
                nats_dir);
    }

    char cfgpath[PATH_MAX] = "";
    for (int i = 0; i + 1 < nargs; i++)
        if (strcmp(args[i], "--config") == 0) snprintf(cfgpath, sizeof cfgpath, "%s", args[i + 1]);

    child_t kids[NSERVICES];
    memset(kids, 0, sizeof kids);
    char bins[NSERVICES][PATH_MAX + 32];
    for (size_t i = 0; i < NSERVICES; i++) {
        kids[i].name = services[i];
        snprintf(bins[i], sizeof bins[i], "%s/%s", bindir, services[i]);
    }
    for (size_t i = 0; i < NSERVICES; i++) {
        char *sargv[] = {bins[i], cfgpath[0] ? "--config" : NULL, cfgpath, NULL};
        kids[i].pid = spawn(bins[i], sargv);
        kids[i].started_ms = sb_now_ms();
    }

    char ready_url[256];
    snprintf(ready_url, sizeof ready_url, "http://%s/readyz", cfg->router.http_listen);
    sb_http_client_t *hc = NULL;
    bool ready = false;
    if (sb_http_client_create(&hc) == SB_OK) {
        for (int i = 0; i < 300 && !ready && !sb_service_stopping(); i++) {
            sb_http_client_response_t resp = {0};
            if (sb_http_client_do(hc, "GET", ready_url, NULL, NULL, 0, 1000, 4096, &resp) ==
                    SB_OK &&
                resp.status == 200)
                ready = true;
            sb_buf_free(&resp.body);
            if (!ready) usleep(100 * 1000);
        }
        sb_http_client_destroy(hc);
    }
    const char *api_base = getenv("SB_CHANNEL_API_BASE");
    printf("\nSwitchboard is %s.\n"
           "  router             http://%s\n"
           "  webhooks           http://%s/v1/ingress/<channel> (webchat/events, whatsapp,\n"
           "                     messenger, instagram, telegram/<bot id>, slack/..., twilio/...)\n"
           "  web chat widget    http://%s/widget/demo.html\n"
           "  health             http://%s/healthz  http://%s/readyz\n"
           "  metrics            http://%s/metrics\n"
           "  channel API calls  %s\n"
           "  NATS               %s (JetStream store %s)\n"
           "  data               %s\n"
           "  agent console      %s console --team support\n"
           "  demo               bench/demo-conversation\n"
           "Press Ctrl-C to stop.\n\n",
           ready ? "up" : "starting (router not ready yet)", cfg->router.http_listen,
           cfg->router.http_listen, cfg->router.http_listen, cfg->router.http_listen,
           cfg->router.http_listen, cfg->router.http_listen,
           api_base && *api_base ? api_base : "the router's built-in sink (GET /_sink)", nats_url,
           nats_dir, cfg->data_dir, self);
    fflush(stdout);

    /* Supervise until asked to stop: restart a service that died, with a pause. */
    int status = 0;
    while (!sb_service_stopping()) {
        int st = 0;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            if (pid == nats) {
                SB_ERROR(MOD, "nats-server exited; stopping");
                nats = 0;
                status = 1;
                break;
            }
            for (size_t i = 0; i < NSERVICES; i++) {
                if (kids[i].pid != pid) continue;
                SB_WARN(MOD, "service exited name=%s status=%d restarts=%d", kids[i].name,
                        WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), kids[i].restarts);
                kids[i].pid = 0;
                if (kids[i].restarts >= 5 && sb_now_ms() - kids[i].started_ms < 60000) {
                    SB_ERROR(MOD, "service keeps failing, stopping name=%s", kids[i].name);
                    status = 1;
                    goto out;
                }
                sleep(1);
                char *sargv[] = {bins[i], cfgpath[0] ? "--config" : NULL, cfgpath, NULL};
                kids[i].pid = spawn(bins[i], sargv);
                kids[i].restarts++;
                kids[i].started_ms = sb_now_ms();
            }
            continue;
        }
        usleep(200 * 1000);
    }
out:
    SB_INFO(MOD, "stopping");
    stop_children(kids, NSERVICES, nats);
    sb_service_close(&svc);
    return status;
}
