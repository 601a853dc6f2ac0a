/* Result codes to text. Every module returns sb_result_t; this is the one place that names
 * them, so logs and error messages say the same thing everywhere. */
#include "sb/result.h"

const char *sb_result_str(sb_result_t r)
{
    switch (r) {
    case SB_OK:
        return "ok";
    case SB_E_INVALID:
        return "invalid input";
    case SB_E_TOO_LARGE:
        return "too large";
    case SB_E_AUTH:
        return "authentication failed";
    case SB_E_NOT_FOUND:
        return "not found";
    case SB_E_EXISTS:
        return "already exists";
    case SB_E_DUPLICATE:
        return "duplicate";
    case SB_E_UNAVAILABLE:
        return "unavailable";
    case SB_E_TIMEOUT:
        return "timeout";
    case SB_E_IO:
        return "i/o error";
    case SB_E_CRYPTO:
        return "crypto failure";
    case SB_E_FULL:
        return "full";
    case SB_E_CONFIG:
        return "configuration error";
    case SB_E_INTERNAL:
        return "internal error";
    }
    return "unknown result";
}
