/* The terminal agent console, a library so that the `switchboard` CLI can run it as
 * `switchboard console ...`. See console.c for how it works. */
#ifndef SB_CONSOLE_H
#define SB_CONSOLE_H

/* Runs the terminal console until `quit`, end of input or SIGINT/SIGTERM; returns the exit
 * status (0 ok; 1 a command failed, NATS unreachable or --wait timed out; 2 bad usage).
 * argv[0] is the command name ("console"); the flags are
 *   --team NAME       team whose escalations to show (required; sb.esc.<NAME>.>)
 *   --agent ID        agent id on the commands (default $USER, else "agent")
 *   --wait N          before reading commands, wait until N escalations are listed
 *   --timeout-s S     how long --wait waits (default 30)
 *   --config FILE, --print-config, --help   as for every Switchboard program.
 * Reads commands from stdin (a terminal or a pipe) and prints to stdout; logs go to stderr.
 * Main thread only; it starts and joins one consumer thread. */
int sb_console_main(int argc, char **argv);

#endif
