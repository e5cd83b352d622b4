/*
 * Shared helpers for the Criterion suites.
 *
 * Criterion 2.4.1 does not fail a test on leaks, so every test body ends
 * with DP_ASSERT_NO_LEAKS(), which runs LeakSanitizer's recoverable check
 * when the build has ASan and does nothing otherwise.
 */
#ifndef DP_TESTS_UNIT_TEST_UTIL_H
#define DP_TESTS_UNIT_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define DP_TEST_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DP_TEST_HAVE_ASAN 1
#endif
#endif

#ifdef DP_TEST_HAVE_ASAN
#include <sanitizer/lsan_interface.h>
#define DP_ASSERT_NO_LEAKS()                                                                       \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (see LSan report)")
#else
#define DP_ASSERT_NO_LEAKS()                                                                       \
    do {                                                                                           \
    } while (0)
#endif

/* Creates a private directory /tmp/dp-<tag>-XXXXXX, its path in dir (cap
 * bytes); fails the test when it cannot. */
void dp_test_tmpdir_make(char *dir, size_t cap, const char *tag);

/* Removes every file (and empty subdirectory) in dir, then dir itself. */
void dp_test_tmpdir_remove(const char *dir);

/* A tiny seeded generator (xorshift64*) for test data: the state is the
 * seed, which must not be 0. */
struct dp_test_rng {
    uint64_t s;
};

uint64_t dp_test_rng_next(struct dp_test_rng *r);

#endif
