/* A tiny stand-in for `switchboard console` used by tests when the CLI is not built: it runs
 * sb_console_main with the same arguments (argv[0] becomes "console"). */
#include "console.h"

int main(int argc, char **argv)
{
    static char name[] = "console";
    argv[0] = name;
    return sb_console_main(argc, argv);
}
