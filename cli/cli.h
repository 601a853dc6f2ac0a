/* Subcommands of the `switchboard` CLI implemented in this folder. */
#ifndef SB_CLI_H
#define SB_CLI_H

/* `switchboard up`: starts nats-server and every service; returns the exit status. */
int sb_cli_up(int argc, char **argv);
/* `switchboard tail`: prints one line per message on the bus until interrupted. */
int sb_cli_tail(int argc, char **argv);

#endif
