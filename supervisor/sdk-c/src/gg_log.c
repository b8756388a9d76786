/*
 * gg_log: the one C function of Evergreen's C SDK library. It is printf-style
 * (C-variadic), which stable Rust cannot define; it formats the message and
 * hands it to the Rust side (evergreen_gg_log_line in src/lib.rs).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "greengrasssdk.h"

/* Writes one formatted message to the function's log; src/lib.rs. */
extern gg_error evergreen_gg_log_line(int level, const char *message);

gg_error gg_log(gg_log_level level, const char *format, ...) {
    char small[1024];
    char *text = small;
    va_list args;
    int needed;
    gg_error err;

    if (format == NULL) {
        return GGE_INVALID_PARAMETER;
    }
    va_start(args, format);
    needed = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (needed < 0) {
        return GGE_INVALID_PARAMETER;
    }
    if ((size_t)needed >= sizeof small) {
        /* Longer than the stack buffer: format again into the exact size. */
        text = malloc((size_t)needed + 1);
        if (text == NULL) {
            return GGE_OUT_OF_MEMORY;
        }
        va_start(args, format);
        vsnprintf(text, (size_t)needed + 1, format, args);
        va_end(args);
    }
    err = evergreen_gg_log_line((int)level, text);
    if (text != small) {
        free(text);
    }
    return err;
}
