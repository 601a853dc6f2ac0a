/* The `switchboard` command line: one entry point for operators. It starts the local stack
 * (`up`), generates key material (`keygen`), shows the bus live (`tail`), prints configuration
 * (`config`), creates streams (`streams apply`), and hands `train`/`predict`/`eval` to the
 * classifier library and `console` to the agent console library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sb/bus.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/seal.h"
#include "sb/service.h"

#ifdef SB_HAVE_NLU
#include "nlu.h"
#endif
#ifdef SB_HAVE_CONSOLE
#include "console.h"
#endif

#define SB_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out, "usage: switchboard COMMAND [options]\n"
                 "\n"
                 "commands:\n"
                 "  up [--config FILE]          start nats-server and every service locally\n"
                 "  console --team NAME         the agent console in this terminal\n"
                 "  train|predict|eval ...      train and evaluate intent models (--help each)\n"
                 "  tail [--config FILE] [SUBJ] print one line per message on the bus (no PII)\n"
                 "  keygen                      print fresh key material as YAML for `keys:`\n"
                 "  config [--config FILE]      print the effective configuration, secrets hidden\n"
                 "  config --reference          print every configuration key as Markdown\n"
                 "  streams apply [--config F]  create or update the JetStream streams\n"
                 "  version                     print the version\n");
}

/* Prints a `keys:` section with fresh random secrets and key pairs. */
static int cmd_keygen(void)
{
    uint8_t cpk[SB_SEAL_KEY_BYTES], csk[SB_SEAL_KEY_BYTES];
    uint8_t rpk[SB_SEAL_KEY_BYTES], rsk[SB_SEAL_KEY_BYTES];
    uint8_t id[SB_SEAL_KEY_BYTES], master[SB_SEAL_KEY_BYTES];
    char b[6][64];

    sb_seal_box_keypair(cpk, csk);
    sb_seal_box_keypair(rpk, rsk);
    sb_seal_keygen(id);
    sb_seal_keygen(master);
    sb_seal_base64_encode(b[0], id, sizeof id);
    sb_seal_base64_encode(b[1], cpk, sizeof cpk);
    sb_seal_base64_encode(b[2], csk, sizeof csk);
    sb_seal_base64_encode(b[3], rpk, sizeof rpk);
    sb_seal_base64_encode(b[4], rsk, sizeof rsk);
    sb_seal_base64_encode(b[5], master, sizeof master);
    printf("keys:\n"
           "  id_secret: \"%s\"\n"
           "  contact_public_key: \"%s\"\n"
           "  contact_secret_key: \"%s\"\n"
           "  recipient_public_key: \"%s\"\n"
           "  recipient_secret_key: \"%s\"\n"
           "  master_key: \"%s\"\n"
           "  master_key_id: 1\n",
           b[0], b[1], b[2], b[3], b[4], b[5]);
    sb_seal_wipe(csk, sizeof csk);
    sb_seal_wipe(rsk, sizeof rsk);
    sb_seal_wipe(id, sizeof id);
    sb_seal_wipe(master, sizeof master);
    sb_seal_wipe(b, sizeof b);
    return 0;
}

static int cmd_config(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reference") == 0) {
            sb_config_print_reference(stdout);
            return 0;
        }
    }
    sb_service_t svc;
    int rc = sb_service_init(&svc, "config", argc, argv, NULL, "switchboard config");
    if (rc != 0) return rc < 0 ? 0 : rc;
    sb_config_print(&svc.cfg, stdout);
    sb_service_close(&svc);
    return 0;
}

static int cmd_streams(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "apply") != 0) {
        fprintf(stderr, "usage: switchboard streams apply [--config FILE]\n");
        return 2;
    }
    sb_service_t svc;
    int rc =
        sb_service_init(&svc, "streams", argc - 1, argv + 1, NULL, "switchboard streams apply");
    if (rc != 0) return rc < 0 ? 0 : rc;
    sb_result_t r = sb_service_connect(&svc, true);
    if (r != SB_OK) {
        fprintf(stderr, "streams: %s\n", sb_result_str(r));
        sb_service_close(&svc);
        return 1;
    }
    printf("streams: all present\n");
    sb_service_close(&svc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (sb_seal_init() != SB_OK) {
        fprintf(stderr, "switchboard: libsodium failed to initialise\n");
        return 1;
    }
    const char *cmd = argv[1];
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;

    if (strcmp(cmd, "up") == 0) return sb_cli_up(sub_argc, sub_argv);
    if (strcmp(cmd, "tail") == 0) return sb_cli_tail(sub_argc, sub_argv);
    if (strcmp(cmd, "keygen") == 0) return cmd_keygen();
    if (strcmp(cmd, "config") == 0) return cmd_config(sub_argc, sub_argv);
    if (strcmp(cmd, "streams") == 0) return cmd_streams(sub_argc, sub_argv);
    if (strcmp(cmd, "version") == 0) {
        printf("switchboard %s\n", SB_VERSION);
        return 0;
    }
#ifdef SB_HAVE_NLU
    if (strcmp(cmd, "train") == 0) return sb_nlu_cmd_train(sub_argc, sub_argv);
    if (strcmp(cmd, "predict") == 0) return sb_nlu_cmd_predict(sub_argc, sub_argv);
    if (strcmp(cmd, "eval") == 0) return sb_nlu_cmd_eval(sub_argc, sub_argv);
#endif
#ifdef SB_HAVE_CONSOLE
    if (strcmp(cmd, "console") == 0) return sb_console_main(sub_argc, sub_argv);
#endif
    fprintf(stderr, "switchboard: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
