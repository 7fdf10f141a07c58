/* The one CHECK of the C test programs (test_core.c, test_hostile.c): count, report where, go on. */
#ifndef INN_TESTS_CHECK_H
#define INN_TESTS_CHECK_H

#include <stdio.h>

static int failures = 0, checks = 0;

/* Counts the check; on failure prints file:line and the printf-style message, and counts a failure
 * (the test continues, so one run lists every broken case). */
#define CHECK(cond, ...)                                         \
    do {                                                         \
        checks++;                                                \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

#endif
