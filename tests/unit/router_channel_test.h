/* What every channel's unit test (tests/unit/router_test_<channel>.c) shares, compiled once
 * (router_channel_test.c) and linked into each of them.
 *
 * The table-driven run over a fixture manifest (the shared format of
 * $SB_SHARED_DIR/channels/<channel>/manifest.json, also used by the router's own fixtures in
 * tests/fixtures/channels/<channel>/): for each case, build the exact request (headers, body,
 * the raw GET line, or the signed `url`'s path and query), configure the channel for it, verify
 * it at the case's verify_now, then parse it and compare the normalized items with `expect`,
 * and build each item's Envelope to check its ids and that no PII is left outside the sealed
 * part. A test names its channel once (fx_channel_t) and runs both fixture sets with
 * fx_run_own_manifest and fx_run_shared_manifest.
 *
 * Around it: the cmocka group setup with the test keys, requests with given headers, and the
 * parse / render / signature helpers the channel tests have in common. Everything asserts with
 * cmocka; the main thread only. */
#ifndef SB_ROUTER_CHANNEL_TEST_H
#define SB_ROUTER_CHANNEL_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "ingress.h"
#include "router_envelope_check.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/redact.h"
#include "sb/seal.h"

#define FX_MAX_HEADERS 16

/* Keys for building Envelopes in tests. */
typedef struct fx_keys {
    sb_ingress_keys_t ik;
    uint8_t contact_sk[SB_SEAL_KEY_BYTES];
} fx_keys_t;

/* The test keys, fresh for each test program (made by fx_setup). */
extern fx_keys_t fx_keys;

/* cmocka group setup of every channel test: libsodium, the redactor and fx_keys. */
int fx_setup(void **state);

/* One case of a manifest, loaded: the request as the router receives it. */
typedef struct fx_case {
    const cJSON *c; /* the case, borrowed from the manifest */
    const cJSON *expect;
    char *body;
    size_t len;
    sb_http_header_t headers[FX_MAX_HEADERS];
    sb_http_request_t req;
    char path[512], query[1024], target[1536];
    char origin[256]; /* a case with a signed `url`: its "scheme://host[:port]", else "" */
    char label[160];
} fx_case_t;

/* The string member key of o, or NULL. */
const char *fx_str(const cJSON *o, const char *key);
/* The secret a case configures: its secret_override, else the manifest's fixture_secrets[key]
 * (which must exist). Borrowed from the manifest. */
const char *fx_case_secret(const fx_case_t *fc, const cJSON *secrets, const char *key);

/* A channel under test. */
typedef struct fx_channel {
    const sb_channel_ops_t *ops;
    size_t own_cases;    /* the router's own fixture set has at least this many cases */
    size_t shared_cases; /* the shared fixture set has exactly this many */
    /* Fills cfg (zeroed) for case fc from the manifest's fixture_secrets. Strings may be
     * borrowed from the manifest: the channel copies what it keeps. */
    void (*make_cfg)(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc);
    /* Optional: the channel's own checks of a case that was parsed (verified, not refused). */
    void (*check_batch)(const fx_case_t *fc, const sb_chan_batch_t *b);
} fx_channel_t;

/* Runs every case of the manifest in dir against t; returns the number of cases run (0 when
 * dir has no manifest). */
size_t fx_run_manifest(const fx_channel_t *t, const char *dir);
/* cmocka tests of the channel given as their state, e.g.
 * cmocka_unit_test_prestate(fx_test_own_manifest, &messenger):
 * the router's own fixtures ($SB_SOURCE_DIR/tests/fixtures/channels/<name>), at least
 * own_cases of them so that an emptied directory fails; and the shared fixtures
 * ($SB_SHARED_DIR/channels/<name>), exactly shared_cases, skipped when the set is absent. */
void fx_test_own_manifest(void **state);
void fx_test_shared_manifest(void **state);

/* A channel made from cfg (asserted to succeed); free with sb_channel_destroy. */
sb_channel_t *fx_channel_create(const sb_channel_ops_t *ops, const sb_config_t *cfg);

/* A POST request to "/" with the given headers (NULL-terminated name, value pairs) and body,
 * all borrowed. */
typedef struct fx_req {
    sb_http_header_t h[FX_MAX_HEADERS];
    sb_http_request_t req;
} fx_req_t;
void fx_req_init(fx_req_t *r, const char *body, size_t len, ...);

/* Parses body (NUL-terminated) with ch into *b (zeroed first), asserting SB_OK. The caller
 * frees b with sb_chan_batch_free. */
void fx_parse(const sb_channel_t *ch, const char *body, sb_chan_batch_t *b);
/* Asserts that ch quarantines each of the n bodies, with a reason and without items. */
void fx_parse_quarantined(const sb_channel_t *ch, const char *const *bodies, size_t n);
/* Renders o for rc with ch at api_base in window w (now_s 1) into *req, zeroed first. */
sb_result_t fx_render(const sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                      const char *api_base, sb_chan_window_t w, sb_chan_http_t *req);
/* fx_render in window OPEN, asserted to succeed, and its body parsed as JSON (asserted); the
 * caller frees the tree with cJSON_Delete and req with sb_chan_http_free. */
cJSON *fx_render_json(const sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                      const char *api_base, sb_chan_http_t *req);
/* Asserts that the rendered body of req is want. */
void fx_body_is(const sb_chan_http_t *req, const char *want);
/* Meta's `X-Hub-Signature-256` value of body under secret: "sha256=<hex>" into out. */
void fx_meta_sign(char *out, size_t n, const char *secret, const char *body);

#endif
