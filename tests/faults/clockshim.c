/* Preloaded before libfaketime in the clock-jump scenario (tests/faults/clock.py).
 *
 * libfaketime 0.9.10 (Debian bookworm) shifts the absolute CLOCK_MONOTONIC deadline of clock_nanosleep by the
 * fake offset even when FAKETIME_DONT_FAKE_MONOTONIC=1, so Python's time.sleep (clock_nanosleep, TIMER_ABSTIME,
 * CLOCK_MONOTONIC since 3.11) fails with EINVAL. Faking CLOCK_MONOTONIC as well is no way out: glibc's
 * sem_clockwait (threading.Event.wait) is not wrapped and would wait out the offset. Here a monotonic sleep goes
 * straight to the kernel; any other clock goes on to libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem) {
    if (clock_id == CLOCK_MONOTONIC) {
        return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
    }
    int (*next)(clockid_t, int, const struct timespec *, struct timespec *) =
        (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, req, rem);
}
