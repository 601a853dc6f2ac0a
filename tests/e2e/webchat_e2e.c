/* Browser end-to-end test of the web chat (CTest entry e2e_webchat, label e2e).
 *
 * This driver starts the real stack with the integration harness: nats-server with JetStream,
 * the router (serving the widget and its demo page), the classifier with the demo model
 * trained by `switchboard train --data data/demo/train.tsv`, the escalation worker and the
 * responder. Then it runs the browser scenario, tests/e2e/webchat.test.mjs, in Node.js with
 * playwright-core driving Debian's chromium (/usr/bin/chromium, or SB_CHROMIUM):
 *
 *   node <SB_E2E_DIR>/webchat.test.mjs <router url> <config path> <test dir>
 *
 * SB_E2E_DIR is the build-tree copy of tests/e2e (package.json, package-lock.json, the
 * scenario); its node_modules is installed here with `npm ci` from the lock file when missing
 * or stale. The screenshot ends up in the test's temporary directory (kept with
 * SB_KEEP_TEST_DIR=1) and is copied to SB_E2E_DIR/ (webchat.png, webchat-agent.png).
 *
 * Missing node, npm or chromium is a failure, loudly: the issue requires this test. Set
 * SB_SKIP_BROWSER=1 to skip it on purpose (exit 77, reported by CTest as skipped). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sb/seal.h"
#include "sb/util.h"

#define SKIP 77
#define READY_MS 60000

static int fail(const char *what)
{
    fprintf(stderr,
            "e2e_webchat: FAILED: %s\n"
            "e2e_webchat: this browser test needs node, npm and Debian's chromium "
            "(scripts/install-deps installs them); set SB_SKIP_BROWSER=1 to skip it on purpose.\n",
            what);
    return 1;
}

static int run(const char *cmd)
{
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static bool same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    bool same = sb_read_file(a, 1 << 24, &x, &xl) == SB_OK &&
                sb_read_file(b, 1 << 24, &y, &yl) == SB_OK && xl == yl && memcmp(x, y, xl) == 0;
    free(x);
    free(y);
    return same;
}

/* npm ci into dir when node_modules is missing or was installed from another lock file. */
static int install_node_modules(const char *dir)
{
    char lock[PATH_MAX], stamp[PATH_MAX], pkg[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(lock, sizeof lock, "%s/package-lock.json", dir);
    snprintf(stamp, sizeof stamp, "%s/node_modules/.sb-lock", dir);
    snprintf(pkg, sizeof pkg, "%s/node_modules/playwright-core/package.json", dir);
    if (access(pkg, R_OK) == 0 && same_file(lock, stamp)) return 0;
    fprintf(stderr, "e2e_webchat: installing playwright-core with npm ci in %s\n", dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error "
             ">npm-ci.log 2>&1 && cp package-lock.json node_modules/.sb-lock",
             dir);
    if (run(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "tail -n 40 '%s/npm-ci.log' >&2", dir);
        (void)run(cmd);
        return -1;
    }
    return 0;
}

int main(void)
{
    const char *skip = getenv("SB_SKIP_BROWSER");
    if (skip && strcmp(skip, "1") == 0) {
        printf("e2e_webchat: SKIPPED because SB_SKIP_BROWSER=1 (the browser test did not run)\n");
        return SKIP;
    }
    const char *src = getenv("SB_SOURCE_DIR");
    const char *bin = getenv("SB_BIN_DIR");
    const char *e2e = getenv("SB_E2E_DIR");
    if (!src || !bin || !e2e) return fail("SB_SOURCE_DIR, SB_BIN_DIR and SB_E2E_DIR must be set");
    const char *chromium = getenv("SB_CHROMIUM") ? getenv("SB_CHROMIUM") : "/usr/bin/chromium";
    if (access(chromium, X_OK) != 0) return fail("chromium not found (apt-get install chromium)");
    if (run("node --version >/dev/null 2>&1") != 0) return fail("node not found");
    if (run("npm --version >/dev/null 2>&1") != 0) return fail("npm not found");
    if (install_node_modules(e2e) != 0) return fail("npm ci of tests/e2e failed");

    if (sb_seal_init() != SB_OK) return fail("libsodium");
    sb_harness_t h;
    memset(&h, 0, sizeof h);
    int status = 1;
    char *extra = NULL;
    if (sb_harness_start_nats(&h) != SB_OK) {
        fprintf(stderr, "e2e_webchat: nats-server did not start\n");
        goto out;
    }
    uint8_t key[32];
    sb_seal_random(key, sizeof key);
    char b64[64];
    sb_seal_base64_encode(b64, key, sizeof key);
    char model[PATH_MAX + 16], data[PATH_MAX], answers[PATH_MAX], rules[PATH_MAX];
    snprintf(model, sizeof model, "%s/demo.model", h.dir);
    snprintf(data, sizeof data, "%s/data/demo/train.tsv", src);
    snprintf(answers, sizeof answers, "%s/config/answers.yaml", src);
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", src);
    extra = sb_xasprintf("log_level: info\n"
                         "channels:\n  webchat:\n    signing_secret: \"whsec_%s\"\n"
                         "  whatsapp:\n    enabled: false\n"
                         "classifier:\n  model: \"%s\"\n  rules: \"%s\"\n"
                         "responder:\n  answers: \"%s\"\n"
                         "escalation:\n  default_team: support\n",
                         b64, model, access(rules, R_OK) == 0 ? rules : "", answers);
    if (sb_harness_write_config(&h, extra) != SB_OK) goto out;

    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%s/switchboard' train --data '%s' --out '%s' >'%s/train.log' 2>&1",
             bin, data, model, h.dir);
    if (run(cmd) != 0) {
        fprintf(stderr, "e2e_webchat: switchboard train failed (see %s/train.log)\n", h.dir);
        goto out;
    }
    const char *services[] = {"switchboard-router", "switchboard-classifier",
                              "switchboard-escalation", "switchboard-responder"};
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
        if (sb_harness_spawn(&h, services[i], NULL) <= 0) {
            fprintf(stderr, "e2e_webchat: cannot start %s\n", services[i]);
            goto out;
        }
    }
    char ready[128];
    snprintf(ready, sizeof ready, "%s/readyz", h.router_url);
    if (sb_harness_wait_http(ready, READY_MS) != SB_OK) {
        fprintf(stderr, "e2e_webchat: the router did not become ready\n");
        goto out;
    }

    snprintf(cmd, sizeof cmd, "SB_BIN_DIR='%s' node '%s/webchat.test.mjs' '%s' '%s' '%s'", bin, e2e,
             h.router_url, h.config_path, h.dir);
    fflush(stdout);
    int rc = run(cmd);
    const char *shots[] = {"webchat.png", "webchat-agent.png", "webchat-failure.png"};
    for (size_t i = 0; i < sizeof shots / sizeof shots[0]; i++) {
        char shot[PATH_MAX + 32];
        snprintf(shot, sizeof shot, "%s/%s", h.dir, shots[i]);
        if (access(shot, R_OK) != 0) continue;
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/%s'", shot, e2e, shots[i]);
        if (run(cmd) == 0) printf("e2e_webchat: screenshot %s/%s\n", e2e, shots[i]);
    }
    status = rc == 0 ? 0 : 1;
    if (status != 0) {
        fprintf(stderr, "e2e_webchat: the browser scenario failed (exit %d)\n", rc);
        sb_harness_dump_log(&h, "switchboard-router", 6000);
        sb_harness_dump_log(&h, "switchboard-escalation", 4000);
        sb_harness_dump_log(&h, "switchboard-responder", 3000);
        sb_harness_dump_log(&h, "switchboard-classifier", 2000);
    }
out:
    free(extra);
    sb_harness_stop(&h);
    printf("e2e_webchat: %s\n", status == 0 ? "PASSED" : "FAILED");
    return status;
}
